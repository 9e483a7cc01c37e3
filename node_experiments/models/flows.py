"""Normalizing flows of the paper's section 4: the continuous normalizing flow (CNF) and the planar NF baseline.

A flow carries samples of a base density (a standard normal, scaled by ``base_std``) to data. Both kinds here
share one interface (``Flow``) so that one task trains either:

- ``push_forward(z0)``: base samples to data, with the flow's log-density at the results (density matching,
  paper section 4.1, trains through this);
- ``log_prob(x, fraction=1.0)``: the log-density of data (maximum likelihood trains through this); with
  ``fraction < 1``, the density of the flow's marginal part of the way from noise to data;
- ``trajectory(z0, fractions)``: base samples carried part of the way, for figures of noise becoming data;
  ``sample(z0)``: all the way.

**CNF** (Chen et al. 2018, section 4, Theorem 1): the state ``z`` follows dz/dt = f(z, t) over [0, t1] and its
log-density follows the *instantaneous change of variables*, d log p(z(t))/dt = -tr(df/dz). Both are integrated
together as one tuple state ``(z, log p)`` by the project's solver (``node_experiments.ode``), through the adjoint
by default. The trace is computed exactly (``trace="exact"``: one autograd pass per dimension, cheap in 2-D), in
closed form when the vector field provides its divergence (``trace="closed_form"``, the planar field's eq. 11),
or estimated without bias by Hutchinson's estimator (``trace="hutchinson"``: tr(A) = E[e^T A e] for Rademacher
or Gaussian probes e, one vector-Jacobian product per evaluation, as FFJORD does for higher dimensions; one probe
per sample, fixed during a solve so that the ODE stays deterministic for the adaptive solver and the adjoint).
A CNF takes RNODE's penalties (``model.regularization``, ``regularization.py``) and ANODE's extra dimensions
(``augment_dim``, see ``CNF``); FFJORD's free-form field is in ``ffjord.py``.

**Planar CNF** (paper eqs. 10-11 and section 4.1): f(z, t) = sum_m gate_m(t) u_m(t) tanh(w_m(t)^T z + b_m(t))
with M hidden units whose parameters a small hypernetwork computes from t (the "time-dependent dynamics" of
section 4.1), and the paper's optional gate gate_m(t) in (0, 1).

**Planar NF** (Rezende & Mohamed 2015): K layers f(z) = z + u h(w^T z + b), h = tanh, with log|det| =
log|1 + u^T h'(w^T z + b) w|. ``u`` is reparameterised so that w^T u >= -1, which makes each layer invertible.
Planar layers have no closed-form inverse; their inverse is computed by bisection on the 1-D monotone equation
along ``w``. ``direction="sample"`` lets the layers map noise to data (density matching: samples and their
density are explicit); ``direction="density"`` lets them map data to noise (maximum likelihood: the density of
data is explicit; sampling goes through the numerical inverse).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .ode_block import ODEBlock
from .regularization import PROBES, Regularization, draw_probe, vector_jacobian

TRACES = ("exact", "closed_form", "hutchinson")
DIRECTIONS = ("sample", "density")


def normal_log_prob(z: torch.Tensor, std: float = 1.0) -> torch.Tensor:
    """log N(z; 0, std^2 I), summed over the last dimension."""
    dim = z.shape[-1]
    return -0.5 * (z / std).pow(2).sum(-1) - dim * (math.log(std) + 0.5 * math.log(2 * math.pi))


class Flow(nn.Module):
    """What the density tasks need of a flow from a normal base density to data (see the module docstring).

    ``trainable_samples`` / ``trainable_density``: whether gradients with respect to the parameters flow through
    ``push_forward`` (density matching needs them) / ``log_prob`` (maximum likelihood needs them).
    """

    trainable_samples = True
    trainable_density = True

    def __init__(self, dim: int, base_std: float) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"dim={dim} must be a positive number of dimensions (2 for the paper's 2-D data).")
        if not base_std > 0:
            raise ValueError(f"base_std={base_std} must be positive (1.0: a standard normal base density).")
        self.dim = dim
        self.base_std = base_std

    @property
    def base_dim(self) -> int:
        """The dimension of the base density's samples (``dim``; an augmented CNF has more)."""
        return self.dim

    def base_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return normal_log_prob(z, self.base_std)

    def push_forward(self, z0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Base samples ``z0`` (N, dim) to data samples x, with log q(x) of the flow: (x, log q(x))."""
        raise NotImplementedError

    def sample(self, z0: torch.Tensor) -> torch.Tensor:
        """Base samples ``z0`` (N, base_dim) to data samples (N, dim)."""
        return self.push_forward(z0)[0]

    def log_prob(self, x: torch.Tensor, fraction: float = 1.0) -> torch.Tensor:
        """log-density (N,) at ``x`` of the flow's distribution ``fraction`` of the way from noise (0) to data (1)."""
        raise NotImplementedError

    @torch.no_grad()
    def density(self, points: torch.Tensor, fraction: float = 1.0, chunk: int = 4096) -> torch.Tensor:
        """q(x) (N,) at ``points`` (N, dim) on the flow's device, ``fraction`` of the way to data, in chunks: the
        values that a density picture shows."""
        return torch.cat([self.log_prob(part, fraction).exp() for part in points.split(chunk)])

    def trajectory(self, z0: torch.Tensor, fractions: Sequence[float]) -> list[torch.Tensor]:
        """Base samples ``z0`` carried ``fraction`` of the way to data, for each of ``fractions`` (in [0, 1])."""
        raise NotImplementedError

    def describe(self, fraction: float) -> str:
        """Where ``fraction`` of the way from noise to data is, in the flow's own terms (a time, a layer count)."""
        return f"{fraction:g} of the way"


# ---------------------------------------------------------------------------------------------------- the CNF
def exact_trace(dz: torch.Tensor, z: torch.Tensor, create_graph: bool) -> torch.Tensor:
    """tr(d dz / dz) per sample, by one autograd pass per dimension (exact; cost grows with the dimension)."""
    columns = [
        torch.autograd.grad(dz[:, i].sum(), z, create_graph=create_graph, retain_graph=True)[0][:, i]
        for i in range(z.shape[1])
    ]
    return torch.stack(columns, dim=1).sum(1)


def hutchinson_trace(dz: torch.Tensor, z: torch.Tensor, probe: torch.Tensor, create_graph: bool) -> torch.Tensor:
    """e^T (d dz / dz) e per sample for the probe e (N, dim): an unbiased estimate of the trace when E[e e^T] = I."""
    return (vector_jacobian(dz, z, probe, create_graph) * probe).sum(1)


class CNFDynamics(nn.Module):
    """The tuple-state ODE of a CNF: d(z, log p)/dt = (f(z, t), -tr(df/dz)).

    The trace needs autograd with respect to z even when the solver evaluates the field without it (the adjoint's
    forward solve, evaluation under ``torch.no_grad``); the graph through the trace is built only when the caller
    wants gradients (training by backprop, the adjoint's backward solve, the checkpointed recomputation).

    For RNODE's penalties (``regularization.RegularizedDynamics``), ``derivatives_and_vjp`` also returns f and
    e^T df/dz: Hutchinson's trace has that product already (``provides_vjp``), the other traces compute it.
    """

    def __init__(self, field: nn.Module, trace: str = "exact", probe: str = "rademacher") -> None:
        super().__init__()
        if trace not in TRACES:
            raise ValueError(f"trace={trace!r} is not a trace method. Choose one of: {', '.join(TRACES)}.")
        if probe not in PROBES:
            raise ValueError(f"probe={probe!r} is not a probe distribution. Choose one of: {', '.join(PROBES)}.")
        if trace == "closed_form" and not hasattr(field, "divergence"):
            raise ValueError(
                f"trace='closed_form' needs a vector field with a divergence(t, z) method, and "
                f"{type(field).__name__} has none. Use trace='exact' or trace='hutchinson'."
            )
        self.field = field
        self.trace = trace
        self.probe_kind = probe
        self.probe: torch.Tensor | None = None  # Hutchinson's probes, drawn once per solve by new_probe

    @property
    def provides_vjp(self) -> bool:
        """Whether every evaluation computes e^T df/dz anyway (Hutchinson's trace), for the Frobenius penalty."""
        return self.trace == "hutchinson"

    def new_probe(self, z: torch.Tensor) -> None:
        """Draw the Hutchinson probes of the next solve (one per sample), from torch's global generator."""
        if self.trace == "hutchinson":
            self.probe = draw_probe(z, self.probe_kind)

    def forward(self, t: torch.Tensor, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.derivatives_and_vjp(t, state, None)[0]

    def derivatives_and_vjp(
        self, t: torch.Tensor, state: tuple[torch.Tensor, ...], probe: torch.Tensor | None
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor, torch.Tensor | None]:
        """((f, -tr df/dz), f, e^T df/dz): the product with Hutchinson's own probe when the trace is Hutchinson's,
        else with ``probe`` (None: not computed)."""
        z = state[0]
        if self.trace == "closed_form" and probe is None:
            dz = self.field(t, z)
            return (dz, -self.field.divergence(t, z)), dz, None
        want_graph = torch.is_grad_enabled()
        vjp = None
        with torch.enable_grad():
            if not (want_graph and z.requires_grad):  # a fresh leaf: d/dz is all we need here
                z = z.detach().requires_grad_(True)
            dz = self.field(t, z)
            if self.trace == "exact":
                trace = exact_trace(dz, z, want_graph)
            elif self.trace == "closed_form":
                trace = self.field.divergence(t, z)
            else:
                if self.probe is None or self.probe.shape != z.shape:
                    raise RuntimeError("CNFDynamics: call new_probe(z) before a solve with trace=hutchinson.")
                vjp = vector_jacobian(dz, z, self.probe, want_graph)
                trace = (vjp * self.probe).sum(1)
            if probe is not None and vjp is None:
                vjp = vector_jacobian(dz, z, probe, want_graph)
        if not want_graph:
            dz, trace = dz.detach(), trace.detach()
            vjp = None if vjp is None else vjp.detach()
        return (dz, -trace), dz, vjp


class CNF(Flow):
    """A continuous normalizing flow over [0, ``t1``]: noise at t = 0, data at t = ``t1``.

    Args:
        field: the vector field, an ``nn.Module`` called as ``field(t, z)`` on (N, dim + augment_dim) states.
        dim: dimension of the data.
        t1: the end of the flow's time interval.
        trace: ``exact``, ``closed_form`` (the field's ``divergence``) or ``hutchinson`` (see the module docstring).
        probe: Hutchinson's probe distribution, ``rademacher`` or ``gaussian``.
        solver: the ``solver`` config group (method, rtol, atol, gradient, options, adjoint_options), passed to
            the ``ODEBlock`` that solves the flow.
        base_std: standard deviation of the normal base density.
        augment_dim: ANODE's extra dimensions (Dupont et al. 2019), see below; 0: none.
        regularization: RNODE's penalty weights, integrated along the flow's solves while it trains
            (``regularization.py``); None: none.

    **Augmentation.** With ``augment_dim = a > 0`` the flow runs in dim + a dimensions. ANODE appends zeros, but
    the joint density of (x, 0) is degenerate (a flow could raise it without bound by squeezing the extra
    coordinates onto 0), so the extra coordinates e are drawn from the base density N(0, base_std^2 I) instead, as
    augmented normalizing flows do (Huang, Dinh and Courville 2020): ``log_prob`` returns the one-sample variational
    bound log p(x, e) - log N(e) <= log p(x) in expectation, and the NLL it gives is an upper bound. Samples drop
    the extra coordinates; ``push_forward`` (the exact density of samples, for density matching) has no
    augmented form.
    """

    def __init__(
        self,
        field: nn.Module,
        *,
        dim: int = 2,
        t1: float = 1.0,
        trace: str = "exact",
        probe: str = "rademacher",
        solver: Mapping[str, Any] | None = None,
        base_std: float = 1.0,
        augment_dim: int = 0,
        regularization: Regularization | Mapping[str, float] | None = None,
    ) -> None:
        super().__init__(dim, base_std)
        if not t1 > 0:
            raise ValueError(f"t1={t1} must be positive: the flow runs from t = 0 to t = t1.")
        if isinstance(augment_dim, bool) or not isinstance(augment_dim, int) or augment_dim < 0:
            raise ValueError(f"augment_dim={augment_dim!r} must be a whole number >= 0 (0: no extra dimensions).")
        self.augment_dim = augment_dim
        self.dynamics = CNFDynamics(field, trace, probe)
        self.t1 = float(t1)
        # The ODE block holds the solver settings; its trajectory() solves the tuple state (z, log p).
        self.block = ODEBlock(self.dynamics, **dict(solver or {}), t1=self.t1, regularization=regularization)

    @property
    def base_dim(self) -> int:
        return self.dim + self.augment_dim

    def integrate(
        self, z: torch.Tensor, logp: torch.Tensor, times: Sequence[float]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Solve for (z, log p) from ``times[0]`` through ``times`` (monotone); returns both at every time."""
        self.dynamics.new_probe(z)
        return self.block.trajectory((z, logp), torch.tensor(list(times), dtype=z.dtype, device=z.device))

    def _augmented(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (N, dim) with ``augment_dim`` coordinates from the base density appended (none: ``x`` itself)."""
        if not self.augment_dim:
            return x
        extra = torch.randn(x.shape[0], self.augment_dim, dtype=x.dtype, device=x.device) * self.base_std
        return torch.cat([x, extra], dim=1)

    def push_forward(self, z0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.augment_dim:
            raise ValueError(
                f"push_forward gives the exact log-density of the samples, which a CNF with augment_dim="
                f"{self.augment_dim} does not have (its extra coordinates are integrated out): use sample(z0) for "
                "samples, log_prob(x) for the likelihood bound, or augment_dim=0."
            )
        zs, logps = self.integrate(z0, self.base_log_prob(z0), [0.0, self.t1])
        return zs[-1], logps[-1]

    def sample(self, z0: torch.Tensor) -> torch.Tensor:
        if not self.augment_dim:
            return super().sample(z0)
        return self.trajectory(z0, [1.0])[0]

    def log_prob(self, x: torch.Tensor, fraction: float = 1.0) -> torch.Tensor:
        t = fraction * self.t1
        state = self._augmented(x)
        if t == 0.0:
            joint = self.base_log_prob(state)
        else:
            # Backwards from x at time t to z0 at 0: log p_t(x) = log p_0(z0) - integral_0^t tr dt, and integrating
            # d(delta)/dt = -tr backwards from delta(t) = 0 gives delta(0) = +integral_0^t tr dt.
            zs, deltas = self.integrate(state, x.new_zeros(x.shape[0]), [t, 0.0])
            joint = self.base_log_prob(zs[-1]) - deltas[-1]
        return joint - normal_log_prob(state[:, self.dim :], self.base_std) if self.augment_dim else joint

    def density(self, points: torch.Tensor, fraction: float = 1.0, chunk: int = 4096) -> torch.Tensor:
        """As ``Flow.density``, with the exact trace in place of Hutchinson's: the estimate is unbiased for a mean
        over samples (the NLL), but its noise differs from point to point and would speckle a picture (FFJORD's
        toy script computes the exact divergence by default); in 2-D the exact trace is two products."""
        trained_with = self.dynamics.trace
        if trained_with != "hutchinson":  # exact or closed form already
            return super().density(points, fraction, chunk)
        self.dynamics.trace = "exact"
        try:
            return super().density(points, fraction, chunk)
        finally:
            self.dynamics.trace = trained_with

    def trajectory(self, z0: torch.Tensor, fractions: Sequence[float]) -> list[torch.Tensor]:
        """``z0`` holds ``base_dim`` coordinates (the extra ones of an augmented flow included); the results, the
        data's ``dim``."""
        if z0.shape[-1] != self.base_dim:
            raise ValueError(
                f"z0 has {z0.shape[-1]} coordinates; this flow's base density has base_dim={self.base_dim} (dim="
                f"{self.dim} + augment_dim={self.augment_dim}): draw z0 of shape (N, {self.base_dim})."
            )
        times = [f * self.t1 for f in fractions]
        grid = sorted({0.0, *times})
        zs = self.integrate(z0, z0.new_zeros(z0.shape[0]), grid)[0] if len(grid) > 1 else [z0]
        by_time = dict(zip(grid, zs))
        return [by_time[t][:, : self.dim] for t in times]

    def describe(self, fraction: float) -> str:
        return f"t = {fraction * self.t1:g}"

    def extra_repr(self) -> str:
        augmented = f", augment_dim={self.augment_dim}" if self.augment_dim else ""
        return f"t1={self.t1}, trace={self.dynamics.trace}{augmented}"


class PlanarField(nn.Module):
    """The planar CNF's vector field (paper eq. 11 with time-dependent parameters, section 4.1).

    f(z, t) = sum_m g_m(t) u_m(t) tanh(w_m(t)^T z + b_m(t)), where (w, u, b, g) for all M units come from a
    hypernetwork of t: Linear(1, hidden), tanh, Linear(hidden, hidden), tanh, Linear(hidden, M (2 dim + 2)), and
    g_m(t) = sigmoid(.) is the paper's gate (``gated=False`` drops it). The divergence has the closed form
    sum_m g_m (u_m . w_m) (1 - tanh^2(w_m^T z + b_m)) (paper eq. 11's -u^T dh/dz summed over the units).
    """

    def __init__(self, dim: int = 2, width: int = 64, hidden: int = 32, gated: bool = True) -> None:
        super().__init__()
        if width < 1 or hidden < 1:
            raise ValueError(f"width={width} and hidden={hidden} must both be at least 1 (the paper's M is the width).")
        self.dim, self.width, self.gated = dim, width, gated
        outputs = width * (2 * dim + 1 + int(gated))
        self.hypernet = nn.Sequential(
            nn.Linear(1, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, outputs)
        )

    def unit_parameters(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """w (M, dim), b (M,), u (M, dim) at time t, with the gate folded into u."""
        params = self.hypernet(t.reshape(1, 1).to(self.hypernet[0].weight.dtype)).reshape(-1)
        m, d = self.width, self.dim
        w = params[: m * d].reshape(m, d)
        u = params[m * d : 2 * m * d].reshape(m, d)
        b = params[2 * m * d : 2 * m * d + m]
        if self.gated:
            u = u * torch.sigmoid(params[2 * m * d + m :]).unsqueeze(1)
        return w, b, u

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        w, b, u = self.unit_parameters(t)
        return torch.tanh(z @ w.t() + b) @ u

    def divergence(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        w, b, u = self.unit_parameters(t)
        return (1 - torch.tanh(z @ w.t() + b).pow(2)) @ (u * w).sum(1)


class PlanarCNF(CNF):
    """The paper's planar CNF with M = ``width`` hidden units (section 4.1): a ``CNF`` (which takes the other
    keyword arguments: t1, trace, probe, solver, base_std, regularization) of a ``PlanarField`` on the data's
    ``dim`` plus ``augment_dim`` dimensions."""

    def __init__(
        self, *, dim: int = 2, width: int = 64, hidden: int = 32, gated: bool = True, augment_dim: int = 0, **flow: Any
    ) -> None:
        super().__init__(PlanarField(dim + augment_dim, width, hidden, gated), dim=dim, augment_dim=augment_dim, **flow)


# ----------------------------------------------------------------------------------------------- the planar NF
_SHIFT = math.log(math.e - 1)  # softplus(_SHIFT) = 1


class PlanarLayer(nn.Module):
    """One planar layer f(z) = z + u_hat tanh(w^T z + b) (Rezende & Mohamed 2015, eq. 10 and appendix A.1).

    u_hat = u + (m(w^T u) - w^T u) w / |w|^2 with m(x) > -1 guarantees w^T u_hat > -1, so that f is invertible
    and 1 + u_hat^T h'(.) w > 0. Rezende & Mohamed take m(x) = -1 + softplus(x); we shift it,
    m(x) = -1 + softplus(x + log(e - 1)), so that m(0) = 0: then u_hat = u whenever w^T u = 0 and a layer with
    u = 0 is the identity. With the unshifted m, every freshly initialised layer (w^T u ~ 0) contracts by up to
    0.31 along w, and a stack of K = 32 or 64 such layers starts far from the base density. The guarantee is the
    same.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        # Near the identity (u ~ 0), with a unit-scale random direction w so that gradients reach u at once.
        self.w = nn.Parameter(torch.randn(dim) / math.sqrt(dim))
        self.u = nn.Parameter(torch.randn(dim) * 0.01)
        self.b = nn.Parameter(torch.zeros(()))

    def u_hat(self) -> torch.Tensor:
        wu = self.w @ self.u
        m = F.softplus(wu + _SHIFT) - 1
        return self.u + (m - wu) * self.w / self.w.pow(2).sum().clamp_min(1e-12)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """f(z) and log|det df/dz| per sample."""
        u = self.u_hat()
        a = z @ self.w + self.b
        h = torch.tanh(a)
        logdet = torch.log((1 + (1 - h.pow(2)) * (self.w @ u)).abs() + 1e-12)
        return z + h.unsqueeze(1) * u, logdet

    @torch.no_grad()
    def inverse(self, y: torch.Tensor, iterations: int = 60) -> torch.Tensor:
        """f^{-1}(y), by bisection on alpha = w^T z: alpha + (w^T u_hat) tanh(alpha + b) = w^T y is monotone."""
        u = self.u_hat()
        wu, target = self.w @ u, y @ self.w
        # |alpha - w^T y| <= |w^T u_hat| since |tanh| < 1: a bracket that always holds the root.
        low, high = target - wu.abs() - 1e-6, target + wu.abs() + 1e-6
        for _ in range(iterations):
            mid = (low + high) / 2
            above = mid + wu * torch.tanh(mid + self.b) > target
            high, low = torch.where(above, mid, high), torch.where(above, low, mid)
        alpha = (low + high) / 2
        return y - torch.tanh(alpha + self.b).unsqueeze(1) * u


class PlanarNF(Flow):
    """K = ``layers`` planar layers (Rezende & Mohamed 2015), the paper's baseline in section 4.1.

    ``direction="sample"``: the layers map noise to data (x = f_K(...f_1(z0))), so samples and their density are
    explicit (density matching). ``direction="density"``: the layers map data to noise, so log p(x) is explicit
    (maximum likelihood); samples come from the numerical inverse.
    """

    def __init__(self, *, dim: int = 2, layers: int = 32, direction: str = "sample", base_std: float = 1.0) -> None:
        super().__init__(dim, base_std)
        if layers < 1:
            raise ValueError(f"layers={layers} must be at least 1 (the paper's K).")
        if direction not in DIRECTIONS:
            raise ValueError(f"direction={direction!r} must be one of: {', '.join(DIRECTIONS)}.")
        self.layers = nn.ModuleList(PlanarLayer(dim) for _ in range(layers))
        self.direction = direction
        self.trainable_samples = direction == "sample"
        self.trainable_density = direction == "density"

    def _forward_layers(self, z: torch.Tensor, layers: Sequence[PlanarLayer]) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply ``layers`` in order; returns the result and the sum of their log|det|."""
        total = z.new_zeros(z.shape[0])
        for layer in layers:
            z, logdet = layer(z)
            total = total + logdet
        return z, total

    @staticmethod
    def _inverse_layers(y: torch.Tensor, layers: Sequence[PlanarLayer]) -> torch.Tensor:
        """Undo ``layers`` (applied in order) numerically."""
        for layer in reversed(layers):
            y = layer.inverse(y)
        return y

    def _count(self, fraction: float) -> int:
        return round(fraction * len(self.layers))

    def push_forward(self, z0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.direction == "sample":
            x, logdet = self._forward_layers(z0, self.layers)
            return x, self.base_log_prob(z0) - logdet
        x = self._inverse_layers(z0, list(self.layers))
        return x, self.log_prob(x)

    def log_prob(self, x: torch.Tensor, fraction: float = 1.0) -> torch.Tensor:
        k = self._count(fraction)
        if self.direction == "sample":
            z0 = self._inverse_layers(x, list(self.layers[:k]))
            _, logdet = self._forward_layers(z0, self.layers[:k])
            return self.base_log_prob(z0) - logdet
        # The data-to-noise layers: the marginal after k of K layers from noise is where the last k undo it.
        z, logdet = self._forward_layers(x, self.layers[len(self.layers) - k :])
        return self.base_log_prob(z) + logdet

    @torch.no_grad()
    def trajectory(self, z0: torch.Tensor, fractions: Sequence[float]) -> list[torch.Tensor]:
        out = []
        for fraction in fractions:
            k = self._count(fraction)
            if self.direction == "sample":
                out.append(self._forward_layers(z0, self.layers[:k])[0])
            else:
                out.append(self._inverse_layers(z0, list(self.layers[len(self.layers) - k :])))
        return out

    def describe(self, fraction: float) -> str:
        return f"{self._count(fraction)} of {len(self.layers)} layers"

    def extra_repr(self) -> str:
        return f"layers={len(self.layers)}, direction={self.direction}"
