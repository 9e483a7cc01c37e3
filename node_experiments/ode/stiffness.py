"""Stiffness detection: Hairer's test from his DOPRI5 code, for the methods whose last two stages share a time.

An explicit method on a stiff problem takes steps that its stability, not its accuracy, bounds: along a fast
decaying eigendirection (eigenvalue ``lambda``) a step is stable only while ``h * |lambda|`` stays inside the
method's stability region, whose extent along the negative real axis is about 3.3 for dopri5. The error control
then holds ``h * |lambda|`` near that boundary, step after step, and the solve crawls (Van der Pol with mu = 1000
takes millions of steps) without ever failing. Hairer & Wanner (Solving ODEs II, 2nd ed., Sec. IV.2, and the
DOPRI5 code) detect it from two stages evaluated at the same time ``t + h``: for dopri5 the last stage
``k7 = f(t + h, y7)`` (``y7`` the new solution) and the one before it, ``k6 = f(t + h, y6)``, give

    h * |lambda|  ~  h * ||k7 - k6|| / ||y7 - y6||,

a Lipschitz quotient of ``f`` along the direction in which the two stage inputs differ, which the stiff
components dominate. Above the method's boundary (Hairer: 3.25 for dopri5) the step is stability-limited; 15 such
accepted steps without 6 consecutive ones below it make the problem stiff (the counters of Hairer's code). Tsit5's
last two stages are likewise both at ``t + h``; its boundary along the real axis is 3.507 (dopri5's 3.307), used
with Hairer's margin as 3.45. ``ButcherTableau.stiffness_boundary`` holds the threshold; methods without one are
not tested.

Cost: the two norms are computed on the device and read in the same transfer as the step's error norm (the loop's
one host synchronisation per step), and only on every ``CHECK_EVERY``-th accepted step, or on every step while a
run of stiff steps is being counted (Hairer checks every ``NSTIFF`` accepted steps, default 1000, likewise).
"""

from __future__ import annotations

import math

import torch

from .errors import StiffnessError
from .tableaus import ButcherTableau

# Hairer's counters: this many stability-limited accepted steps make the problem stiff ...
STIFF_STEPS = 15
# ... unless this many consecutive steps below the boundary come first, which reset the count.
NONSTIFF_RESET = 6
# Steps between checks while no stiff step has been seen (a check costs a few small kernels, no host sync).
CHECK_EVERY = 16


def stiffness_quantities(k_last: torch.Tensor, k_prev: torch.Tensor, y_last: torch.Tensor, y_prev: torch.Tensor):
    """``(||k_last - k_prev||, ||y_last - y_prev||)`` as one device tensor (no host synchronisation): the two
    last stages of a step and their inputs, evaluated at the same time. Four small kernels."""
    with torch.no_grad():  # in a solve recorded by autograd: nothing here is differentiated
        differences = torch.stack([k_last - k_prev, y_last - y_prev]).reshape(2, -1)
        return torch.linalg.vector_norm(differences, dim=1)


class StiffnessDetector:
    """Hairer's counters over the accepted steps of one solve; ``observe`` raises ``StiffnessError`` when they say
    the problem is stiff.

    ``method`` and ``boundary`` name the method and its threshold on ``h * |lambda|``; ``sign`` maps the integration
    variable back to time for the message; ``s_end`` is where the solve is going (``math.inf`` for an event solve).
    """

    def __init__(self, tableau: ButcherTableau, sign: float, s_end: float):
        self.method, self.boundary = tableau.name, tableau.stiffness_boundary
        self.sign, self.s_end = sign, s_end
        self.stiff = 0  # Hairer's IASTI
        self.nonstiff = 0  # Hairer's NONSTI
        self.since = math.nan  # where the current run of stiff steps began
        self.accepted = 0

    def wants_check(self) -> bool:
        """Whether the step being attempted, if accepted, is one to check: pass its quantities to ``observe``."""
        return self.stiff > 0 or (self.accepted + 1) % CHECK_EVERY == 0

    def observe(self, s: float, h: float, quantities: list[float] | None) -> None:
        """An accepted step ``[s, s + h]``, with its ``(||dk||, ||dy||)`` when it was checked (else None)."""
        self.accepted += 1
        if quantities is None:
            return
        dk, dy = quantities
        h_lambda = h * dk / dy if dy > 0 else 0.0
        if h_lambda > self.boundary:
            if self.stiff == 0:
                self.since = s
            self.stiff += 1
            self.nonstiff = 0
            if self.stiff >= STIFF_STEPS:
                self._raise(s + h, h, h_lambda)
        else:
            self.nonstiff += 1
            if self.nonstiff >= NONSTIFF_RESET:
                self.stiff = 0

    def _raise(self, s: float, h: float, h_lambda: float) -> None:
        rate = h_lambda / h
        ahead = ""
        if math.isfinite(self.s_end):
            steps = rate * (self.s_end - s) / self.boundary
            ahead = (f" To reach t={self.sign * self.s_end:.6g} it would take about {steps:.2g} more steps of that "
                     f"size.")  # fmt: skip
        raise StiffnessError(
            f"the problem is stiff at t={self.sign * s:.9g}: over {self.stiff} accepted steps since "
            f"t={self.sign * self.since:.9g}, {self.method}'s step size was held by its stability rather than its "
            f"accuracy, at h*|lambda| = {h_lambda:.3g} (step h={h:.3g}, |lambda| ~ {rate:.3g} estimated from its last "
            f"two stages as ||k_last - k_prev|| / ||y_last - y_prev||) beyond its stability boundary "
            f"{self.boundary} (Hairer & Wanner's stiffness test).{ahead} Loosen rtol/atol if the accuracy allows it, "
            f"rescale the problem if a fast component comes from its units, use a fixed-step method with a step "
            f"you choose (options={{'step_size': ...}}), or solve it with an implicit method elsewhere (scipy's "
            f"Radau, BDF or LSODA; diffrax's Kvaerno5). options={{'stiffness_check': False}} integrates on anyway."
        )
