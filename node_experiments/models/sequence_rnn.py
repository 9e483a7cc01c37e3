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
``loss(observations, obs_times, future=None, future_times=None)`` -> (loss, metrics) and
``predict(observations, obs_times, query_times)`` -> (reconstruction at ``obs_times``, prediction at
``query_times``). Given ``future`` points after the observations, the loss also scores the model's prediction of
them from the observations alone: the forecasting objective (Rubanova et al., NeurIPS 2019, section 4's
extrapolation setting: encode the observed part, reconstruct what follows). The RNN predicts them as it
extrapolates at test time, autoregressively.
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


def with_future(
    observations: torch.Tensor,
    obs_times: torch.Tensor,
    future: torch.Tensor | None,
    future_times: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The points a loss scores and their times: the observations, followed by ``future`` ``(B, m, obs_dim)`` at
    ``future_times`` ``(B, m)`` when they are given (both or neither)."""
    if (future is None) != (future_times is None):
        raise ValueError("future and future_times go together: give both (the forecasting objective) or neither.")
    if future is None:
        return observations, obs_times
    return torch.cat([observations, future], dim=1), torch.cat([obs_times, future_times], dim=1)


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

    The paper says "RNN" without naming the cell; torchdiffeq's latent_ode.py example uses an Elman cell. Over the
    100 steps of a spiral, the Elman cell's gradients explode now and then (spikes of 10-50x the median gradient
    norm, which derail training at the example's learning rate), so the default is a GRU of the same width.
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

    def states(self, observations: torch.Tensor, obs_times: torch.Tensor) -> torch.Tensor:
        """``(B, n, hidden)``: the state after each step, step i having read observation i-1 and the gap to t_i."""
        return self.rnn(self._step_inputs(observations, obs_times))[0]

    def loss(
        self,
        observations: torch.Tensor,
        obs_times: torch.Tensor,
        future: torch.Tensor | None = None,
        future_times: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The negative Gaussian log-likelihood per sequence, averaged over the batch: of each observation given
        the ones before it and, with ``future`` at ``future_times`` (after the last observation), of the
        autoregressive predictions there (the forecasting objective, see the module docstring)."""
        states = self.states(observations, obs_times)
        predictions = self.head(states)
        targets, _ = with_future(observations, obs_times, future, future_times)
        if future_times is not None:
            ahead = self.rollout(observations[:, -1], obs_times[:, -1], states[:, -1], future_times)
            predictions = torch.cat([predictions, ahead], dim=1)
        log_likelihood = gaussian_log_likelihood(targets, predictions, self.obs_std).mean()
        return -log_likelihood, {"log_likelihood": log_likelihood}

    def predict(
        self, observations: torch.Tensor, obs_times: torch.Tensor, query_times: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One-step predictions at the observation times, and predictions at the 1-D increasing ``query_times``.

        A query time up to a sequence's last observation is predicted from the observations before it, in one step
        from the state they leave (at an observation time, that is its reconstruction); the query times after it
        are predicted autoregressively (``rollout``).
        """
        states = self.states(observations, obs_times)
        batch, count = obs_times.shape
        queries = query_times.expand(batch, -1).contiguous()
        before = torch.searchsorted(obs_times.contiguous(), queries)  # (B, Q): how many observations precede
        predictions = self.head(self._one_step(states, observations, obs_times, queries, before))
        ahead = before == count  # (B, Q) past the last observation; once a sequence is past, it stays past
        if bool(ahead.any()):
            first = int(ahead.any(dim=0).nonzero()[0])
            rolled = self.rollout(observations[:, -1], obs_times[:, -1], states[:, -1], queries[:, first:],
                                  ahead[:, first:])  # fmt: skip
            predictions[:, first:] = torch.where(ahead[:, first:, None], rolled, predictions[:, first:])
        return self.head(states), predictions

    def rollout(
        self,
        value: torch.Tensor,
        time: torch.Tensor,
        state: torch.Tensor,
        queries: torch.Tensor,
        ahead: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Autoregressive predictions ``(B, Q, obs_dim)`` at increasing ``queries`` ``(B, Q)``, from the last
        observation ``value`` ``(B, obs_dim)`` at ``time`` ``(B,)`` and the ``state`` ``(B, hidden)`` after it:
        each prediction is fed back as the input towards the next query, with the gap to it.

        ``ahead`` ``(B, Q)``, when given, says which queries lie past a sequence's last observation: the others
        neither move its state nor count (their rows of the result are to be ignored).
        """
        outputs = []
        for index in range(queries.shape[1]):
            query = queries[:, index]
            output, next_state = self.rnn(torch.cat([value, (query - time)[:, None]], dim=-1)[:, None], state[None])
            next_value = self.head(output[:, 0])
            if ahead is None:
                value, state, time = next_value, next_state[0], query
            else:
                moves = ahead[:, index]
                value = torch.where(moves[:, None], next_value, value)
                state = torch.where(moves[:, None], next_state[0], state)
                time = torch.where(moves, query, time)
            outputs.append(next_value)
        return torch.stack(outputs, dim=1)

    def _one_step(
        self,
        states: torch.Tensor,
        observations: torch.Tensor,
        obs_times: torch.Tensor,
        queries: torch.Tensor,
        before: torch.Tensor,
    ) -> torch.Tensor:
        """The network's output ``(B, Q, hidden)`` one step from the state after ``before`` ``(B, Q)`` observations
        (the initial zeros, observation zeros and t = 0 when none), towards each query time ``(B, Q)``."""

        def after(series: torch.Tensor) -> torch.Tensor:  # series[:, before - 1], with zeros for "before = 0"
            padded = torch.cat([torch.zeros_like(series[:, :1]), series], dim=1)
            index = before if series.dim() == 2 else before[..., None].expand(-1, -1, series.shape[-1])
            return padded.gather(1, index)

        step_input = torch.cat([after(observations), (queries - after(obs_times))[..., None]], dim=-1)
        output, _ = self.rnn(step_input.flatten(0, 1)[:, None], after(states).flatten(0, 1)[None].contiguous())
        return output[:, 0].unflatten(0, queries.shape)
