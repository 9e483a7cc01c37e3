"""Regularisers of a neural ODE's dynamics, integrated along its own solve (RNODE: Finlay, Jacobsen, Nurbekyan and
Oberman, "How to train your neural ODE", ICML 2020).

A neural ODE dh/dt = f(t, h) grows costly as it trains: its dynamics stiffen and the adaptive solver takes more and
more steps (the paper's Figure 3d). RNODE adds two penalties to the loss, each an integral over the solve:

- kinetic energy, K = integral ||f(t, h(t))||^2 dt: straight, constant-speed trajectories (optimal transport);
- Jacobian Frobenius norm, B = integral ||df/dh||_F^2 dt: smooth dynamics, estimated without bias by Hutchinson's
  trick, ||A||_F^2 = E[||e^T A||^2] for probes e with E[e e^T] = I, one vector-Jacobian product per evaluation
  (FFJORD's trace estimator already computes e^T df/dh, so a Hutchinson CNF gets B for free).

Both are integrated as extra states of the same solve (``RegularizedDynamics``: d/dt of the state, then of each
integral), so that one solve gives the state and the penalties, under every gradient strategy: the adjoint carries
the integrals' adjoints, backprop and the checkpointed recomputation differentiate them like any state. The
integrals ride along without steering the step size (``ModelStateNorm``): the solver controls the error of the
model's own state exactly as it does without them, so that a run's NFE measure the dynamics, not the penalty.

Units: both integrands are divided by the state's number of entries D (per sample), so that one weight means the
same for a 2-D flow and a 64 x 6 x 6 ODE-Net feature map: the penalties are E_batch[integral ||f||^2 / D dt] and
E_batch[integral ||e^T df/dh||^2 / D dt]. The state's first dimension is the batch.

``Regularization`` holds the weights (0 turns a penalty off; both 0, the default, solves exactly as without this
module); ``ODEBlock`` integrates the active penalties when its model trains (``module.training`` and gradients on)
and keeps the batch means of its last solve in ``penalties``; ``collect_penalties`` sums them into the loss, as
FFJORD's and RNODE's ``get_regularization`` collect theirs from the model's ODE layers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

KINDS = ("kinetic", "jacobian")
PROBES = ("rademacher", "gaussian")


@dataclass(frozen=True)
class Regularization:
    """The weights of the penalties in the loss: ``kinetic`` (K) and ``jacobian`` (B); 0 is off."""

    kinetic: float = 0.0
    jacobian: float = 0.0

    def __post_init__(self) -> None:
        for kind in KINDS:
            value = getattr(self, kind)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(
                    f"regularization {kind}={value!r} must be a finite weight >= 0 (0 turns the penalty off; RNODE "
                    f"trains with 0.01), e.g. {{'{kind}': 0.01}}."
                )

    @classmethod
    def of(cls, value: Regularization | Mapping[str, float] | None) -> Regularization:
        """The weights from a mapping such as ``{"kinetic": 0.01, "jacobian": 0.01}`` (None: all off)."""
        if value is None or isinstance(value, cls):
            return value or cls()
        unknown = sorted(set(value) - set(KINDS))
        if unknown:
            raise ValueError(f"regularization has no {', '.join(unknown)}: its weights are {', '.join(KINDS)}.")
        return cls(**value)

    @property
    def kinds(self) -> tuple[str, ...]:
        """The penalties with a positive weight, in ``KINDS`` order: the integrals a solve adds to its state."""
        return tuple(kind for kind in KINDS if getattr(self, kind) > 0)

    def __str__(self) -> str:
        return ", ".join(f"{f.name}={getattr(self, f.name):g}" for f in fields(self))


def draw_probe(like: torch.Tensor, kind: str = "rademacher") -> torch.Tensor:
    """A Hutchinson probe shaped like ``like``: Rademacher (+-1) or standard Gaussian entries, from torch's global
    generator (so that a seeded run draws the same probes)."""
    if kind == "rademacher":
        return torch.randint(0, 2, like.shape, device=like.device).to(like.dtype) * 2 - 1
    if kind == "gaussian":
        return torch.randn_like(like)
    raise ValueError(f"probe={kind!r} is not a probe distribution. Choose one of: {', '.join(PROBES)}.")


def vector_jacobian(out: torch.Tensor, inp: torch.Tensor, probe: torch.Tensor, create_graph: bool) -> torch.Tensor:
    """e^T d out / d inp for the probe e shaped like ``out`` (one backward pass)."""
    return torch.autograd.grad(out, inp, probe, create_graph=create_graph, retain_graph=True)[0]


def mean_square(x: torch.Tensor) -> torch.Tensor:
    """||x_i||^2 / D for each sample i of the batch ``x`` (N, ...): the integrand of both penalties."""
    return x.reshape(x.shape[0], -1).pow(2).mean(1)


def field_and_vjp(
    field: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], t: torch.Tensor, h: torch.Tensor,
    probe: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """f(t, h) and, for a probe e, e^T df/dh (else None).

    The product needs autograd with respect to h even where the solver evaluates the field without gradients (the
    adjoint's forward solve); the graph through it is kept only when the caller records one (backprop, the adjoint's
    backward solve, the checkpointed recomputation), as for the CNF's trace.
    """
    if probe is None:
        return field(t, h), None
    want_graph = torch.is_grad_enabled()
    with torch.enable_grad():
        if not (want_graph and h.requires_grad):
            h = h.detach().requires_grad_(True)
        f = field(t, h)
        vjp = vector_jacobian(f, h, probe, want_graph)
    if not want_graph:
        f, vjp = f.detach(), vjp.detach()
    return f, vjp


class RegularizedDynamics(nn.Module):
    """The ODE on (*state, *integrals): the dynamics' derivatives, then the rate of each penalty in ``kinds``.

    ``func`` is either a vector field ``func(t, h)`` on a tensor state, or dynamics on a tuple state that provide
    ``derivatives_and_vjp(t, state, probe) -> (derivatives, f, e^T df/dh)`` (the CNF: its state is (z, log p) and
    its Hutchinson trace already has the product, which it returns when ``func.provides_vjp``). Call ``new_probe``
    before each solve: the Frobenius probe stays fixed during it, so that the ODE is one deterministic function for
    the adaptive solver and the adjoint.
    """

    def __init__(self, func: nn.Module, kinds: Sequence[str]) -> None:
        super().__init__()
        unknown = [kind for kind in kinds if kind not in KINDS]
        if unknown or not kinds:
            raise ValueError(f"kinds={list(kinds)} must be a non-empty list of penalties from {', '.join(KINDS)}.")
        self.func = func
        self.kinds = tuple(kinds)
        self.probe: torch.Tensor | None = None

    def new_probe(self, h: torch.Tensor) -> None:
        """Draw the Frobenius estimate's probe for the next solve from ``h``, the model's state (if it needs one)."""
        needs_probe = "jacobian" in self.kinds and not getattr(self.func, "provides_vjp", False)
        self.probe = draw_probe(h) if needs_probe else None

    def forward(self, t: torch.Tensor, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        model_state = state[: len(state) - len(self.kinds)]
        if hasattr(self.func, "derivatives_and_vjp"):
            derivatives, f, vjp = self.func.derivatives_and_vjp(t, model_state, self.probe)
        elif len(model_state) == 1:
            f, vjp = field_and_vjp(self.func, t, model_state[0], self.probe)
            derivatives = (f,)
        else:
            raise ValueError(
                f"{type(self.func).__name__} has a tuple state of {len(model_state)} tensors: regularising it needs "
                "a derivatives_and_vjp(t, state, probe) method that says which part is f (as CNFDynamics has)."
            )
        rates = {"kinetic": lambda: mean_square(f), "jacobian": lambda: mean_square(vjp)}
        return (*derivatives, *(rates[kind]() for kind in self.kinds))


class ModelStateNorm:
    """The solver's error norm of the model's own state, the first ``parts`` tensors of the augmented tuple state.

    ``norm`` is the solve's own choice: ``rms`` (the default: the largest RMS of a part, as the solver computes it
    for a tuple state), ``max``, or a callable taking the model state's scaled error (a tensor, or a tuple of them).
    """

    def __init__(self, parts: int, norm: Any = "rms") -> None:
        if not (callable(norm) or norm in ("rms", "max")):
            raise ValueError(f"norm={norm!r} is not a norm of the forward solve: use rms, max or a callable.")
        self.parts, self.norm = parts, norm

    def __call__(self, error: tuple[torch.Tensor, ...]) -> torch.Tensor:
        kept = error[: self.parts]
        if callable(self.norm):
            return self.norm(kept if self.parts > 1 else kept[0])
        if self.norm == "max":
            return torch.stack([part.abs().max() for part in kept]).max()
        return torch.stack([part.pow(2).mean() for part in kept]).max().sqrt()


def collect_penalties(model: nn.Module) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
    """The weighted sum of the penalties of every ODE block's last training solve (None when none was integrated),
    and each penalty's value for logging (``reg_kinetic``, ``reg_jacobian``, detached); clears them.

    ODE blocks are the modules with ``penalties`` and ``regularization`` attributes (``ODEBlock``).
    """
    total, values = None, {}
    for module in model.modules():
        penalties = getattr(module, "penalties", None)
        if not penalties:
            continue
        for kind, value in penalties.items():
            weighted = getattr(module.regularization, kind) * value
            total = weighted if total is None else total + weighted
            name = f"reg_{kind}"
            values[name] = values.get(name, 0) + value.detach()
        module.penalties = {}
    return total, values
