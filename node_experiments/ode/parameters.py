"""What a solve must differentiate: whether autograd records it, and which tensors besides ``y0`` and ``t`` the
strategies with explicit parameters (``odeint_adjoint``, ``odeint_checkpoint``) compute gradients for.

The answers choose the integrator's storage (``runge_kutta.py``: a recorded graph, or the faster buffers that no
gradient flows through) and whether a strategy can skip its backward machinery and solve plainly.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .errors import InvalidArgumentError

def needs_graph(func, tensors: Sequence[torch.Tensor], t: torch.Tensor, params: Sequence[torch.Tensor] = ()) -> bool:
    """Whether autograd must record the solve (else the faster buffered storage is safe).

    Closures that are not ``nn.Module``s may capture tensors that require grad, so they are recorded whenever
    gradients are enabled.
    """
    if not torch.is_grad_enabled():
        return False
    if t.requires_grad or any(y.requires_grad for y in tensors) or any(p.requires_grad for p in params):
        return True
    if isinstance(func, nn.Module):
        return any(p.requires_grad for p in func.parameters())
    return True


def differentiated_params(func, adjoint_params: Sequence[torch.Tensor] | None, name: str) -> tuple[torch.Tensor, ...]:
    """The tensors besides ``y0`` and ``t`` whose gradients ``odeint_adjoint``/``odeint_checkpoint`` compute:
    ``adjoint_params``, else ``func.parameters()``; those that require grad."""
    if adjoint_params is None:
        if not isinstance(func, nn.Module):
            raise InvalidArgumentError(
                f"func is a {type(func).__name__}, not an nn.Module, so {name} cannot find its parameters. Pass "
                f"adjoint_params=(tensors to differentiate), or adjoint_params=() when there are none, or make func "
                f"an nn.Module."
            )
        adjoint_params = tuple(func.parameters())
    return tuple(p for p in adjoint_params if p.requires_grad)


def wants_gradients(tensors: Sequence[torch.Tensor], t: torch.Tensor, params: Sequence[torch.Tensor]) -> bool:
    """Whether a strategy with explicit parameters has any gradient to compute (else a plain solve will do)."""
    return torch.is_grad_enabled() and (t.requires_grad or any(y.requires_grad for y in tensors) or len(params) > 0)
