"""The state of a solve: a tensor or tuple of tensors of any shape, as the integrator's flat 1-D vector and back.

``as_state`` checks ``y0`` and describes its layout as a ``StateSpec``; the spec flattens states and derivatives
for the integrator (``runge_kutta.py``), which works on one flat vector in one working dtype, and unflattens them
for the user's vector field, which receives and returns the state's own structure and dtype (as torchdiffeq's
``_TupleFunc`` and ``_flat_to_shape`` do).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from .errors import InvalidArgumentError

# States of these dtypes are integrated in float32 (see ``as_state``).
REDUCED_PRECISION = (torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class StateSpec:
    """How a tensor or tuple of tensors maps to the integrator's flat state and back.

    ``dtype`` is the state's; ``working_dtype`` the integrator's: the same, except that a float16 or bfloat16 state
    is integrated in float32 (its steps, stage combinations, error estimates and dense output), while the vector
    field still receives and returns the state's own dtype. A 2-byte state cannot accumulate steps smaller than
    its resolution (a bfloat16 ``y`` plus ``h * dy`` rounds back to ``y`` once ``h * dy < y / 256``): integrated in
    its own dtype it stalls and returns a wrong answer with no error.
    """

    shapes: tuple[torch.Size, ...]
    is_tuple: bool
    dtype: torch.dtype
    working_dtype: torch.dtype

    @property
    def sizes(self) -> list[int]:
        return [math.prod(shape) for shape in self.shapes]

    def flatten(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        flat = tensors[0].reshape(-1) if len(tensors) == 1 else torch.cat([x.reshape(-1) for x in tensors])
        return flat if self.dtype == self.working_dtype else flat.to(self.working_dtype)

    def unflatten(self, flat: torch.Tensor):
        """Views of a flat state (or of the rows of a ``(T, N)`` solution, with ``leading`` dims kept)."""
        if flat.dtype != self.dtype:
            flat = flat.to(self.dtype)
        if not self.is_tuple:  # view(*ints) is the fastest form (a torch.Size argument takes twice as long)
            shape = (*flat.shape[:-1], *self.shapes[0])
            return flat.view(*shape) if shape else flat.view(())
        lead = tuple(flat.shape[:-1])
        parts = torch.split(flat, self.sizes, dim=-1)
        return tuple(p.reshape((*lead, *shape)) for p, shape in zip(parts, self.shapes))

    def check_derivative(self, out, t: torch.Tensor):
        """The vector field's output as a list of tensors in the state's dtype, or a clear error if its structure is
        wrong or it is not floating point.

        A floating-point result of another dtype is cast to the state's, as torchdiffeq stores it: a field that
        computes in float64 (float64 parameters, or float64 times promoting what they touch) for a float32 state.
        """
        if not self.is_tuple and isinstance(out, torch.Tensor) and out.shape == self.shapes[0] and out.dtype == self.dtype:
            return (out,)  # the common case, checked in one line: this runs at every evaluation
        outs = out if isinstance(out, (tuple, list)) else (out,)
        if (isinstance(out, (tuple, list)) != self.is_tuple) or len(outs) != len(self.shapes) or any(
            not isinstance(o, torch.Tensor) or o.shape != shape for o, shape in zip(outs, self.shapes)
        ):
            got = [tuple(o.shape) if isinstance(o, torch.Tensor) else type(o).__name__ for o in outs]
            want = [tuple(s) for s in self.shapes]
            raise InvalidArgumentError(
                f"func(t, y) at t={float(t):.6g} returned shapes {got}, but y0 has shapes {want}. The vector field "
                f"must return dy/dt with exactly the structure and shapes of y0."
            )
        if not all(torch.is_floating_point(o) for o in outs):
            got = sorted({str(o.dtype) for o in outs if not torch.is_floating_point(o)})
            raise InvalidArgumentError(
                f"func(t, y) at t={float(t):.6g} returned dtype {', '.join(got)} for a state of dtype {self.dtype}. "
                f"dy/dt must be floating point (a result of another floating dtype is cast to the state's): check "
                f"the function's arithmetic, e.g. `return dydt.to(y.dtype)`."
            )
        return tuple(o if o.dtype == self.dtype else o.to(self.dtype) for o in outs)


def as_state(y0, name: str = "y0") -> tuple[list[torch.Tensor], StateSpec]:
    is_tuple = isinstance(y0, (tuple, list))
    tensors = list(y0) if is_tuple else [y0]
    if not tensors or not all(isinstance(y, torch.Tensor) for y in tensors):
        raise InvalidArgumentError(
            f"{name} must be a tensor or a non-empty tuple of tensors, got {type(y0).__name__}. Pass the initial "
            f"state as torch tensor(s)."
        )
    for y in tensors:
        if not torch.is_floating_point(y):
            raise InvalidArgumentError(
                f"{name} has dtype {y.dtype}, which is not floating point. Convert it, e.g. {name}.float() or "
                f"{name}.double()."
            )
    if len({y.dtype for y in tensors}) > 1 or len({y.device for y in tensors}) > 1:
        raise InvalidArgumentError(
            f"the tensors of {name} mix dtypes/devices {[(str(y.dtype), str(y.device)) for y in tensors]}. Give "
            f"every part of a tuple state the same dtype and device."
        )
    if sum(y.numel() for y in tensors) == 0:
        raise InvalidArgumentError(
            f"{name} has no elements (shape {[tuple(y.shape) for y in tensors] if is_tuple else tuple(y0.shape)}): "
            f"there is nothing to integrate. Pass a state with at least one number (a 0-dim tensor is fine)."
        )
    dtype = tensors[0].dtype
    working = torch.float32 if dtype in REDUCED_PRECISION else dtype
    return tensors, StateSpec(tuple(y.shape for y in tensors), is_tuple, dtype, working)
