"""The latent ODE of the paper's section 5 (Chen et al. 2018; Figure 6, Table 2, appendix).

A variational autoencoder for time series observed at arbitrary times:

- a recognition RNN reads the observations backwards in time, each with its time gap, and outputs the mean and
  log-variance of the Gaussian posterior q(z_0 | x) over the latent state at t = 0;
- the latent state follows dz/dt = f(z), a neural network, solved by the project's ODE solver (``solver`` config
  group, through ``ODEBlock``);
- a decoder maps each latent state z(t_i) to the mean of a Gaussian over the observation x_i, whose std is fixed.

Training maximises the evidence lower bound (ELBO): E_q[log p(x | z_0)] - KL(q(z_0 | x) || N(0, I)), one sample
of z_0 per sequence with the reparameterisation trick. Sizes are the paper's (appendix): a 25-unit recognition
RNN, a 4-dimensional latent state, dynamics and decoder with one hidden layer of 20 units each. The activations
(ELU dynamics, ReLU decoder) follow torchdiffeq's ``latent_ode.py`` example (contributed after the paper); the
recognition RNN is a GRU by default rather than the example's Elman cell, whose exploding gradients derail
training (``sequence_rnn.recurrent_layer``).

Every sequence keeps its own observation times: a batch is solved once, on the sorted union of its times, and
each sequence reads its own points from that solution (``solve_at_times``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.distributions import Normal, kl_divergence

from .ode_block import ODEBlock
from .sequence_rnn import check_obs_std, gaussian_log_likelihood, recurrent_layer, time_gaps, with_future


def solve_at_times(ode: ODEBlock, z0: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """The solution from ``z0`` ``(B, D)`` at t = 0, at each sequence's own ``times`` ``(B, n)``: ``(B, n, D)``.

    One solve for the whole batch, on the sorted union of all the times (and t = 0), from which each sequence
    gathers its own entries. The result equals solving each sequence alone on its own times, up to the solver's
    tolerance (the error control then sees the whole batch at once). Times must be >= 0; they need not be sorted.
    """
    if times.numel() and times.min() < 0:
        raise ValueError(f"solve_at_times: times must be >= 0 (the latent state is given at t = 0); got {times.min()}.")
    union, index = torch.unique(times, sorted=True, return_inverse=True)
    if union.numel() == 0 or union[0] > 0:
        union, index = torch.cat([union.new_zeros(1), union]), index + 1
    if union.numel() == 1:  # every time is 0: the solution is the initial state
        path = z0[None]
    else:
        path = ode.trajectory(z0, union)  # (T, B, D)
    return path.transpose(0, 1).gather(1, index[..., None].expand(-1, -1, z0.shape[-1]))


class RecognitionRNN(nn.Module):
    """q(z_0 | x): a recurrent network reads ``(x_i, t_i - t_{i-1})`` from the last observation to the first."""

    def __init__(self, obs_dim: int, hidden: int, latent_dim: int, cell: str = "gru") -> None:
        super().__init__()
        self.rnn = recurrent_layer(cell, obs_dim + 1, hidden)
        self.out = nn.Linear(hidden, 2 * latent_dim)

    def forward(self, observations: torch.Tensor, obs_times: torch.Tensor) -> Normal:
        inputs = torch.cat([observations, time_gaps(obs_times)[..., None]], dim=-1)
        _, last = self.rnn(inputs.flip(1))
        mean, log_variance = self.out(last[0]).chunk(2, dim=-1)
        # Unvalidated: weights that diverged give a non-finite loss, which the trainer reports as a divergence,
        # rather than a ValueError from inside torch.distributions.
        return Normal(mean, torch.exp(0.5 * log_variance), validate_args=False)


class LatentDynamics(nn.Module):
    """f in dz/dt = f(z): ``layers`` hidden layers of ``hidden`` ELU units (autonomous: f does not depend on t).

    The paper's appendix gives one hidden layer; torchdiffeq's ``latent_ode.py`` example uses two.
    """

    def __init__(self, latent_dim: int, hidden: int, layers: int = 1) -> None:
        super().__init__()
        if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
            raise ValueError(
                f"layers={layers!r} must be a whole number of hidden layers, 1 or more (the paper: 1; torchdiffeq's "
                "example: 2)."
            )
        widths = [latent_dim] + [hidden] * layers
        body = [module for n_in, n_out in zip(widths, widths[1:]) for module in (nn.Linear(n_in, n_out), nn.ELU())]
        self.net = nn.Sequential(*body, nn.Linear(hidden, latent_dim))

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class LatentODE(nn.Module):
    """The latent ODE (see the module docstring).

    Args:
        obs_dim: size of one observation (2 for spirals).
        latent_dim: size of the latent state (4 in the paper).
        rnn_hidden: hidden units of the recognition RNN (25 in the paper).
        dynamics_hidden: hidden units of the dynamics network (20 in the paper).
        dynamics_layers: hidden layers of the dynamics network (1 in the paper, 2 in torchdiffeq's example).
        decoder_hidden: hidden units of the decoder (20 in the paper).
        obs_std: the fixed std of the Gaussian likelihood p(x_i | z(t_i)).
        rnn_cell: the recognition network's cell, ``gru`` or ``rnn`` (see ``sequence_rnn.recurrent_layer``).
        solver: the ``solver`` config group (method, rtol, atol, gradient, options, adjoint_options).
        regularization: RNODE's penalty weights for the latent dynamics (``{"kinetic": w, "jacobian": w}``, see
            ``regularization.py``; None: none), integrated over each training batch's solve.
    """

    def __init__(
        self,
        obs_dim: int = 2,
        latent_dim: int = 4,
        rnn_hidden: int = 25,
        dynamics_hidden: int = 20,
        dynamics_layers: int = 1,
        decoder_hidden: int = 20,
        obs_std: float = 0.1,
        rnn_cell: str = "gru",
        solver: Mapping[str, Any] | None = None,
        regularization: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__()
        check_obs_std(obs_std)
        self.obs_std = obs_std
        self.encoder = RecognitionRNN(obs_dim, rnn_hidden, latent_dim, rnn_cell)
        dynamics = LatentDynamics(latent_dim, dynamics_hidden, dynamics_layers)
        self.ode = ODEBlock(dynamics, **(solver or {}), regularization=regularization)
        self.decoder = nn.Sequential(nn.Linear(latent_dim, decoder_hidden), nn.ReLU(), nn.Linear(decoder_hidden, obs_dim))

    def posterior(self, observations: torch.Tensor, obs_times: torch.Tensor) -> Normal:
        """q(z_0 | x), a diagonal Gaussian ``(B, latent_dim)``."""
        return self.encoder(observations, obs_times)

    def latent_path(self, z0: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        """z(t) ``(B, n, latent_dim)`` at each sequence's ``times`` ``(B, n)``, from z(0) = ``z0``."""
        return solve_at_times(self.ode, z0, times)

    def decode(self, z0: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        """The observation means ``(B, n, obs_dim)`` at ``times`` ``(B, n)`` from z(0) = ``z0``."""
        return self.decoder(self.latent_path(z0, times))

    def loss(
        self,
        observations: torch.Tensor,
        obs_times: torch.Tensor,
        future: torch.Tensor | None = None,
        future_times: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The negative ELBO per sequence (one reparameterised sample of z_0), averaged over the batch.

        With ``future`` ``(B, m, obs_dim)`` at ``future_times`` ``(B, m)``, points after the observations, the
        likelihood scores them too while q(z_0) still reads the observations alone: the forecasting objective of
        Rubanova et al. (NeurIPS 2019), which trains the model to extrapolate rather than only to reconstruct.
        """
        posterior = self.posterior(observations, obs_times)
        targets, times = with_future(observations, obs_times, future, future_times)
        means = self.decode(posterior.rsample(), times)
        log_likelihood = gaussian_log_likelihood(targets, means, self.obs_std).mean()
        prior = Normal(torch.zeros_like(posterior.loc), torch.ones_like(posterior.scale))
        kl = kl_divergence(posterior, prior).sum(dim=-1).mean()
        elbo = log_likelihood - kl
        return -elbo, {"elbo": elbo, "log_likelihood": log_likelihood, "kl": kl}

    def predict(
        self, observations: torch.Tensor, obs_times: torch.Tensor, query_times: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoded from the posterior mean of z_0: the reconstruction at ``obs_times`` and the prediction at the
        1-D ``query_times`` (any times >= 0: within the observations or past them), in one solve."""
        z0 = self.posterior(observations, obs_times).mean
        times = torch.cat([obs_times, query_times.expand(obs_times.shape[0], -1)], dim=1)
        means = self.decode(z0, times)
        return means[:, : obs_times.shape[1]], means[:, obs_times.shape[1] :]
