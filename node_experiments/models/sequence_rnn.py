"""The RNN baseline of the paper's Table 2 (Chen et al. 2018, section 5.1 and appendix), and what it shares with
the latent ODE: the time gaps between irregular observations and the Gaussian observation model.

The paper's baseline is "a recurrent neural net with 25 hidden units trained to minimize negative Gaussian
log-likelihood", in the version "whose inputs were concatenated with the time difference to the next observation
to aid RNN with irregular observations". Here that is a recurrent network (a GRU by default, see
``recurrent_layer``) that, at each step, reads the previous
observation and the time gap to the point it must predict, and outputs that point's mean; the likelihood's std
is fixed (the data's noise level), as for the latent ODE. It extrapolates autoregressively: past the last
observation, each prediction is fed back as the next input, with the gap to the next query time.

Both models implement the interface the sequence task uses (``node_experiments.tasks.sequences``):
``loss(observations, obs_times)`` -> (loss, metrics) and ``predict(observations, obs_times, query_times)`` ->
(reconstruction at ``obs_times``, prediction at ``query_times``).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def time_gaps(times: torch.Tensor, start: float = 0.0) -> torch.Tensor:
    """``(..., n)`` gaps ``t_i - t_{i-1}`` between increasing times, with ``t_{-1} = start``.

    Fed to both recurrent networks: the RNN baseline, reading forwards, learns how far ahead it predicts; the
    latent ODE's recognition RNN, reading backwards, how far back the next (earlier) step lies, down to t = 0.
    """
    previous = torch.cat([torch.full_like(times[..., :1], start), times[..., :-1]], dim=-1)
    return times - previous


def gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, std: float) -> torch.Tensor:
    """log N(x | mean, std^2 I), summed over every dimension but the first (one value per sequence)."""
    log_density = -0.5 * ((x - mean) / std) ** 2 - math.log(std) - 0.5 * math.log(2 * math.pi)
    return log_density.flatten(1).sum(dim=1)


def check_obs_std(obs_std: float) -> None:
    """The likelihood's fixed std must be positive: a noise-free data set (noise 0) needs an explicit one."""
    if not (isinstance(obs_std, (int, float)) and math.isfinite(obs_std) and obs_std > 0):
        raise ValueError(
            f"obs_std={obs_std!r} must be a positive standard deviation: it is the fixed std of the Gaussian "
            "likelihood, e.g. obs_std=0.1."
        )


RECURRENT_CELLS = {"gru": nn.GRU, "rnn": nn.RNN}


def recurrent_layer(cell: str, input_size: int, hidden: int) -> nn.RNNBase:
    """A one-layer, batch-first recurrent network: ``gru`` (gated) or ``rnn`` (Elman, tanh).

    The paper says "RNN" without naming the cell; the authors' example uses an Elman cell. Over the 100 steps of a
    spiral, the Elman cell's gradients explode now and then (spikes of 10-50x the median gradient norm, which
    derail training at the example's learning rate), so the default is a GRU of the same width.
    """
    if cell not in RECURRENT_CELLS:
        raise ValueError(f"cell={cell!r} is not a recurrent cell: use one of {', '.join(RECURRENT_CELLS)}.")
    return RECURRENT_CELLS[cell](input_size, hidden, batch_first=True)


class SequenceRNN(nn.Module):
    """The RNN baseline: predicts each observation from the previous ones and the time gap to it.

    Args:
        obs_dim: size of one observation (2 for spirals).
        hidden: hidden units (25 in the paper).
        obs_std: the fixed std of the Gaussian likelihood.
        cell: ``gru`` or ``rnn`` (see ``recurrent_layer``).
    """

    def __init__(self, obs_dim: int = 2, hidden: int = 25, obs_std: float = 0.1, cell: str = "gru") -> None:
        super().__init__()
        check_obs_std(obs_std)
        self.obs_std = obs_std
        self.rnn = recurrent_layer(cell, obs_dim + 1, hidden)
        self.head = nn.Linear(hidden, obs_dim)

    def _step_inputs(self, observations: torch.Tensor, obs_times: torch.Tensor) -> torch.Tensor:
        """``(B, n, obs_dim + 1)``: at step i, observation i-1 (zeros before the first) and the gap to time i."""
        previous = torch.cat([torch.zeros_like(observations[:, :1]), observations[:, :-1]], dim=1)
        return torch.cat([previous, time_gaps(obs_times)[..., None]], dim=-1)

    def one_step_predictions(
        self, observations: torch.Tensor, obs_times: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean of each observation given the earlier ones ``(B, n, obs_dim)``, and the final hidden state."""
        states, last = self.rnn(self._step_inputs(observations, obs_times))
        return self.head(states), last

    def loss(self, observations: torch.Tensor, obs_times: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The negative Gaussian log-likelihood per sequence, averaged over the batch."""
        predictions, _ = self.one_step_predictions(observations, obs_times)
        log_likelihood = gaussian_log_likelihood(observations, predictions, self.obs_std).mean()
        return -log_likelihood, {"log_likelihood": log_likelihood}

    def predict(
        self, observations: torch.Tensor, obs_times: torch.Tensor, query_times: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One-step predictions at the observation times, and autoregressive ones at ``query_times``.

        ``query_times`` (1-D, increasing) must come after every observation time.
        """
        reconstruction, hidden = self.one_step_predictions(observations, obs_times)
        value, time = observations[:, -1], obs_times[:, -1]
        future = []
        for query in query_times:
            step_input = torch.cat([value, (query - time)[:, None]], dim=-1)[:, None]
            output, hidden = self.rnn(step_input, hidden)
            value, time = self.head(output[:, 0]), torch.full_like(time, float(query))
            future.append(value)
        return reconstruction, torch.stack(future, dim=1)
