"""FFJORD's free-form CNF (Grathwohl, Chen, Bettencourt, Sutskever and Duvenaud, ICLR 2019) for 2-D toy densities.

Where the paper's planar CNF restricts the field to a sum of planar units so that its trace has a closed form,
FFJORD lets the field be any network and estimates the trace of its Jacobian by Hutchinson's estimator (one
vector-Jacobian product per evaluation, ``flows.CNFDynamics``). Its toy models (FFJORD's ``train_toy.py``) build
the field from *concat-squash* layers, linear layers whose output the time gates and shifts:

    ConcatSquashLinear(x, t) = (W x + b) * sigmoid(w_g t + b_g) + w_b t,

stacked as ``dim -> 64 -> 64 -> 64 -> dim`` with tanh between the layers, integrated over [0, 0.5] at
rtol = atol = 1e-5. ``FFJORD`` is that field inside the project's ``CNF`` (trace, probes, solver, regularisation
and augmentation as there); its defaults are FFJORD's toy settings, except that the end time stays fixed (FFJORD's
toy runs also learn it) and the probes are Rademacher (FFJORD's toy default is Gaussian; Rademacher probes give the
trace estimate the lower variance, 2 sum_{i != j} A_ij^2 against the Gaussian's 2 ||A||_F^2).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .flows import CNF

ACTIVATIONS = {"tanh": nn.Tanh, "softplus": nn.Softplus, "elu": nn.ELU, "swish": nn.SiLU}


class ConcatSquashLinear(nn.Module):
    """FFJORD's concat-squash layer: ``(W x + b) * sigmoid(w_g t + b_g) + w_b t`` (module docstring)."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.layer = nn.Linear(dim_in, dim_out)
        self.hyper_gate = nn.Linear(1, dim_out)
        self.hyper_bias = nn.Linear(1, dim_out, bias=False)

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        time = t.reshape(1, 1).to(x.dtype)
        return self.layer(x) * torch.sigmoid(self.hyper_gate(time)) + self.hyper_bias(time)


class ConcatSquashField(nn.Module):
    """A free-form vector field f(t, z): concat-squash layers ``dim -> hidden[0] -> ... -> dim`` with
    ``activation`` between them (none after the last)."""

    def __init__(self, dim: int, hidden: Sequence[int] = (64, 64, 64), activation: str = "tanh") -> None:
        super().__init__()
        hidden = list(hidden)
        if dim < 1 or not hidden or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden):
            raise ValueError(
                f"dim={dim} and hidden={hidden} must be positive: hidden lists the width of each hidden layer, e.g. "
                "[64, 64, 64] (FFJORD's toy models)."
            )
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation={activation!r} is not one of: {', '.join(ACTIVATIONS)}.")
        sizes = [dim, *hidden, dim]
        self.layers = nn.ModuleList(ConcatSquashLinear(n_in, n_out) for n_in, n_out in zip(sizes, sizes[1:]))
        self.activation = ACTIVATIONS[activation]()

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        *inner, last = self.layers
        for layer in inner:
            z = self.activation(layer(t, z))
        return last(t, z)


class FFJORD(CNF):
    """FFJORD's toy CNF: a ``CNF`` of a ``ConcatSquashField`` on the data's ``dim`` plus ``augment_dim`` dimensions.

    The other keyword arguments (solver, base_std, regularization) are the ``CNF``'s; the defaults are FFJORD's
    toy settings (module docstring).
    """

    def __init__(
        self,
        *,
        dim: int = 2,
        hidden: Sequence[int] = (64, 64, 64),
        activation: str = "tanh",
        t1: float = 0.5,
        trace: str = "hutchinson",
        probe: str = "rademacher",
        augment_dim: int = 0,
        **flow: Any,
    ) -> None:
        field = ConcatSquashField(dim + augment_dim, hidden, activation)
        super().__init__(field, dim=dim, t1=t1, trace=trace, probe=probe, augment_dim=augment_dim, **flow)
