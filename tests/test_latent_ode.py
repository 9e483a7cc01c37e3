"""The latent ODE and the RNN baseline: one solve per batch on the union of the times, the recognition network,
predictions, and training that lowers the loss."""

from __future__ import annotations

import pytest
import torch

from node_experiments.data.spirals import make_spirals
from node_experiments.models.latent_ode import LatentDynamics, LatentODE, solve_at_times
from node_experiments.models.ode_block import ODEBlock
from node_experiments.models.sequence_rnn import SequenceRNN, time_gaps
from node_experiments.ode import odeint

TIGHT = dict(method="dopri5", rtol=1e-9, atol=1e-9, gradient="backprop")


@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny: one thread is faster, and much faster on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tight_block(seed: int = 0) -> ODEBlock:
    torch.manual_seed(seed)
    return ODEBlock(LatentDynamics(latent_dim=4, hidden=20).double(), **TIGHT)


def irregular_times(batch: int, count: int, seed: int = 0) -> torch.Tensor:
    """Each row: ``count`` distinct sorted times in (0, 2], on a grid so that rows share some of them."""
    generator = torch.Generator().manual_seed(seed)
    keys = torch.rand(batch, 40, generator=generator)
    return (keys.argsort(dim=1)[:, :count].sort(dim=1).values + 1).double() * 0.05


def test_one_solve_on_the_union_equals_solving_each_sample_alone() -> None:
    block = tight_block()
    z0 = torch.randn(5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    times = irregular_times(5, 7)
    together = solve_at_times(block, z0, times)
    assert together.shape == (5, 7, 4)
    for sample in range(5):
        alone = odeint(block.func, z0[sample], torch.cat([times.new_zeros(1), times[sample]]), rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(together[sample], alone[1:], rtol=1e-6, atol=1e-7)


def test_the_union_solve_has_the_same_gradients_as_solving_alone() -> None:
    block = tight_block()
    z0 = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2), requires_grad=True)
    times = irregular_times(3, 5, seed=3)
    (grad_together,) = torch.autograd.grad(solve_at_times(block, z0, times).pow(2).sum(), z0)
    for sample in range(3):
        t = torch.cat([times.new_zeros(1), times[sample]])
        (grad_alone,) = torch.autograd.grad(odeint(block.func, z0, t, rtol=1e-9, atol=1e-9)[1:, sample].pow(2).sum(), z0)
        torch.testing.assert_close(grad_together[sample], grad_alone[sample], rtol=1e-5, atol=1e-7)


def test_union_solve_accepts_unsorted_repeated_and_zero_times() -> None:
    block = tight_block()
    z0 = torch.randn(2, 4, dtype=torch.float64)
    times = torch.tensor([[0.3, 0.0, 0.3], [0.1, 0.2, 0.0]], dtype=torch.float64)
    out = solve_at_times(block, z0, times)
    torch.testing.assert_close(out[0, 1], z0[0])
    torch.testing.assert_close(out[1, 2], z0[1])
    torch.testing.assert_close(out[0, 0], out[0, 2])
    assert not torch.allclose(out[1, 0], out[1, 1])
    at_zero = solve_at_times(block, z0, torch.zeros(2, 3, dtype=torch.float64))
    torch.testing.assert_close(at_zero, z0[:, None].expand(-1, 3, -1))
    with pytest.raises(ValueError, match="times must be >= 0"):
        solve_at_times(block, z0, -times)


def test_time_gaps() -> None:
    times = torch.tensor([[0.5, 0.7, 1.5], [0.0, 1.0, 2.0]])
    torch.testing.assert_close(time_gaps(times), torch.tensor([[0.5, 0.2, 0.8], [0.0, 1.0, 1.0]]))


@pytest.fixture(scope="module")
def spirals():
    return make_spirals(n_spirals=16, n_obs=12, window=20, grid_points=200, seed=0)


def small_latent_ode(**solver) -> LatentODE:
    torch.manual_seed(0)
    return LatentODE(obs_std=0.1, solver={"method": "dopri5", "rtol": 1e-5, "atol": 1e-5, "gradient": "backprop", **solver})


def test_the_paper_sizes() -> None:
    model = LatentODE()
    assert model.encoder.rnn.hidden_size == 25 and model.encoder.rnn.input_size == 3
    assert model.encoder.out.out_features == 2 * 4
    dynamics = model.ode.func.net
    assert [layer.out_features for layer in dynamics if hasattr(layer, "out_features")] == [20, 4]
    assert model.decoder[0].out_features == 20 and model.decoder[-1].out_features == 2
    rnn = SequenceRNN()
    assert rnn.rnn.hidden_size == 25 and rnn.rnn.input_size == 3


def test_the_recognition_network_reads_the_time_gaps(spirals) -> None:
    model = small_latent_ode()
    posterior = model.posterior(spirals.observations, spirals.obs_times)
    shifted = model.posterior(spirals.observations, spirals.obs_times + 0.5)
    assert posterior.mean.shape == posterior.scale.shape == (16, 4)
    assert not torch.allclose(posterior.mean, shifted.mean)


def test_the_recognition_network_reads_backwards(spirals) -> None:
    """Its last input is the first observation, so that one moves the posterior most (a tanh RNN forgets)."""
    model = small_latent_ode()
    base = model.posterior(spirals.observations, spirals.obs_times).mean
    moved = []
    for index in (0, -1):
        observations = spirals.observations.clone()
        observations[:, index] += 1.0
        moved.append((model.posterior(observations, spirals.obs_times).mean - base).abs().mean())
    assert moved[0] > moved[1]


@pytest.mark.parametrize("kind", ["latent_ode", "rnn"])
def test_predictions_at_the_observation_times_are_the_reconstruction(spirals, kind: str) -> None:
    """Predicting at every grid time of both windows gives, at each spiral's observation times, its reconstruction."""
    model = small_latent_ode() if kind == "latent_ode" else SequenceRNN(obs_std=0.1)
    with torch.no_grad():
        reconstruction, predictions = model.predict(spirals.observations, spirals.obs_times, spirals.times)
    assert reconstruction.shape == (16, 12, 2) and predictions.shape == (16, 40, 2)
    assert torch.isfinite(predictions).all()
    index = torch.searchsorted(spirals.times, spirals.obs_times)[..., None].expand(-1, -1, 2)
    torch.testing.assert_close(predictions.gather(1, index), reconstruction, rtol=1e-4, atol=1e-5)


def test_the_rnn_predicts_a_time_from_the_observations_before_it_and_extrapolates_from_the_last(spirals) -> None:
    """Moving observation k changes the predictions after its time and none before; moving the last one changes
    the whole extrapolation window (fed back step by step)."""
    torch.manual_seed(0)
    model = SequenceRNN(obs_std=0.1)
    times, window = spirals.times, spirals.window
    with torch.no_grad():
        _, before = model.predict(spirals.observations, spirals.obs_times, times)
        for k in (5, -1):
            observations = spirals.observations.clone()
            observations[:, k] += 1.0
            _, after = model.predict(observations, spirals.obs_times, times)
            changed = (after - before).abs().amax(dim=-1) > 0  # (B, 2W)
            later = times > spirals.obs_times[:, k, None]
            assert torch.equal(changed, later), k
    assert bool(changed[:, window:].all())


@pytest.mark.parametrize("kind", ["latent_ode", "rnn"])
def test_a_few_training_steps_lower_the_loss(spirals, kind: str) -> None:
    model = small_latent_ode() if kind == "latent_ode" else SequenceRNN(obs_std=0.1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    batch = (spirals.observations, spirals.obs_times)

    def loss_now() -> float:
        torch.manual_seed(1)  # the same posterior sample before and after
        with torch.no_grad():
            return float(model.loss(*batch)[0])

    before = loss_now()
    for _ in range(15):
        loss, terms = model.loss(*batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss_now() < 0.8 * before
    if kind == "latent_ode":
        torch.testing.assert_close(terms["elbo"], terms["log_likelihood"] - terms["kl"])
        assert float(terms["kl"].detach()) >= 0


def test_the_gradient_strategies_agree(spirals) -> None:
    """In float64: the adjoint agrees to the tolerance; the checkpointed strategy to rounding (it repeats
    backprop's steps and differentiates the same operations)."""
    grads = {}
    for gradient in ("backprop", "adjoint", "checkpoint"):
        model = small_latent_ode(gradient=gradient, rtol=1e-7, atol=1e-7).double()
        torch.manual_seed(5)
        model.loss(spirals.observations[:4].double(), spirals.obs_times[:4].double())[0].backward()
        grads[gradient] = torch.cat([p.grad.flatten() for p in model.parameters()])
    relative = {name: float((g - grads["backprop"]).norm() / grads["backprop"].norm()) for name, g in grads.items()}
    assert relative["adjoint"] < 1e-4, relative  # measured: 5e-6
    assert relative["checkpoint"] < 1e-12, relative


@pytest.mark.parametrize("obs_std", [0.0, -1.0, float("nan")])
def test_a_bad_likelihood_std_is_named(obs_std: float) -> None:
    with pytest.raises(ValueError, match=f"obs_std={obs_std!r}"):
        LatentODE(obs_std=obs_std)
    with pytest.raises(ValueError, match=f"obs_std={obs_std!r}"):
        SequenceRNN(obs_std=obs_std)


def test_a_bad_cell_is_named() -> None:
    with pytest.raises(ValueError, match="cell='lstm'"):
        LatentODE(rnn_cell="lstm")
    with pytest.raises(ValueError, match="cell='lstm'"):
        SequenceRNN(cell="lstm")
    assert isinstance(LatentODE(rnn_cell="rnn").encoder.rnn, torch.nn.RNN)


def test_the_dynamics_depth_is_a_setting() -> None:
    """Two hidden layers, as in torchdiffeq's example: 4 -> 20 -> 20 -> 4, each hidden layer followed by an ELU."""
    dynamics = LatentODE(dynamics_layers=2).ode.func.net
    assert [layer.out_features for layer in dynamics if hasattr(layer, "out_features")] == [20, 20, 4]
    assert sum(isinstance(layer, torch.nn.ELU) for layer in dynamics) == 2


@pytest.mark.parametrize("layers", [0, 1.5, True])
def test_a_bad_dynamics_depth_is_named(layers) -> None:
    with pytest.raises(ValueError, match=f"layers={layers!r}"):
        LatentODE(dynamics_layers=layers)
