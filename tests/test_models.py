"""The MNIST networks and the ODE block: they learn, the field sees time, the NFE counted is the field's calls,
the gradient strategies, measured memory, and plain ValueErrors about their own arguments."""

from __future__ import annotations

import pytest
import torch

from node_experiments.models import MLP, ODEBlock, ODENet, ResNet
from node_experiments.models.mnist import ConcatConv2d, ConvODEFunc
from node_experiments.ode import odeint, odeint_adjoint, record_stats
from node_experiments.training.meters import SavedTensorBytes


def solver(**changes) -> dict:
    settings = dict(method="dopri5", rtol=1e-3, atol=1e-3, gradient="adjoint", options={}, adjoint_options={})
    return {**settings, **changes}


@pytest.mark.parametrize(
    "build",
    [lambda: ODENet(1, 10, 8, solver()), lambda: ODENet(1, 10, 8, solver(gradient="backprop")), lambda: ResNet(1, 10, 8, 2),
     lambda: MLP(1, 28, 30, 10)],
    ids=["odenet", "rknet", "resnet", "mlp"],
)  # fmt: skip
def test_every_model_learns_a_small_batch(build) -> None:
    """Twelve Adam steps on eight images (a bright square whose place is the label) lower the cross-entropy, with
    a non-zero gradient for every parameter, the ODE block's vector field included."""
    torch.manual_seed(0)
    images, labels = 0.25 * torch.rand(8, 1, 28, 28), torch.arange(8)
    for label in range(8):
        row, col = 4 + 6 * (label // 4), 4 + 6 * (label % 4)
        images[label, 0, row : row + 6, col : col + 6] = 1.0
    model = build()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-2)
    losses = []
    for _ in range(12):
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0], losses
    assert all(p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("width", [0, 40])
def test_a_width_group_norm_cannot_divide_is_a_plain_value_error(width: int) -> None:
    for build in (lambda: ODENet(1, 10, width, solver()), lambda: ResNet(1, 10, width, 2)):
        with pytest.raises(ValueError, match=f"width={width} cannot be normalised"):
            build()


def test_the_vector_field_depends_on_time() -> None:
    torch.manual_seed(0)
    conv = ConcatConv2d(4, 4)
    x = torch.randn(2, 4, 6, 6)
    assert not torch.allclose(conv(torch.tensor(0.0), x), conv(torch.tensor(1.0), x))


class CountingField(torch.nn.Module):
    """The ODE-Net's vector field, counting its calls."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.field, self.calls = ConvODEFunc(width), 0

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.field(t, h)


def test_the_nfe_counted_are_the_vector_fields_calls_forward_and_backward() -> None:
    field = CountingField(8)
    block = ODEBlock(field, options={"first_step": None, "max_num_steps": None})
    assert block.options == {}, "options left null are the solver's defaults"
    with record_stats() as stats:
        output = block(torch.randn(2, 8, 6, 6))
        forward_calls = field.calls
        output.sum().backward()
    assert stats.nfe_forward == forward_calls >= 8  # dopri5: 6 per step, FSAL, plus the initial step's choice
    assert stats.nfe_backward == field.calls - forward_calls > 0


def test_the_adjoint_s_backward_solve_takes_the_block_s_options() -> None:
    """With options={"max_step": 0.01} and no adjoint options, odeint_adjoint takes 100 steps forward and 100
    backward (the backward solve inherits the options); the block took 100 and 3 (it passed adjoint_options={},
    which turned the inheritance off). It now counts what odeint_adjoint counts on the same call."""
    torch.manual_seed(0)
    field = TanhField(3).double()
    h0 = torch.randn(4, 3, dtype=torch.float64)
    counts = []
    for solve in ("block", "odeint_adjoint"):
        with record_stats() as stats:
            if solve == "block":
                ODEBlock(field, options={"max_step": 0.01, "first_step": None})(h0).sum().backward()
            else:
                t = torch.tensor([0.0, 1.0], dtype=torch.float64)
                odeint_adjoint(field, h0, t, rtol=1e-3, atol=1e-3, options={"max_step": 0.01})[-1].sum().backward()
        counts.append((stats.accepted_steps, stats.backward_accepted_steps, stats.nfe_forward, stats.nfe_backward))
    assert counts[0] == counts[1]
    assert counts[0][1] >= 100


def test_adjoint_options_are_set_over_the_inherited_ones() -> None:
    """A config sets one adjoint option (the seminorm): the others still come from the forward options."""
    block = ODEBlock(TanhField(3), options={"max_num_steps": 7, "max_step": 0.5}, adjoint_options={"norm": "seminorm"})
    assert block.backward_options() == {"max_num_steps": 7, "max_step": 0.5, "norm": "seminorm"}
    assert ODEBlock(TanhField(3), options={"max_num_steps": 7}, adjoint_options={"norm": None}).backward_options() is None


class TanhField(torch.nn.Module):
    """A smooth vector field, dh/dt = tanh(W h + b t), so adjoint and backprop gradients must agree closely."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(size, size)

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.linear(h) + t)


@pytest.mark.parametrize("gradient", ["adjoint", "backprop", "checkpoint"])
def test_the_gradient_setting_picks_how_gradients_are_computed(gradient: str) -> None:
    """Backward work (a backward solve, a recomputation) happens for the adjoint and the checkpointed strategy;
    every way the gradients are those of the ODE's solution."""
    torch.manual_seed(0)
    func = TanhField(3).double()
    h0 = torch.randn(4, 3, dtype=torch.float64)
    block = ODEBlock(func, rtol=1e-10, atol=1e-10, gradient=gradient)
    with record_stats() as stats:
        block(h0).square().sum().backward()
    assert (stats.nfe_backward > 0) == (gradient != "backprop")
    assert f"gradient={gradient}" in repr(block)
    gradient = func.linear.weight.grad.clone()
    func.zero_grad()
    odeint(func, h0, torch.tensor([0.0, 1.0], dtype=torch.float64), rtol=1e-12, atol=1e-12)[-1].square().sum().backward()
    torch.testing.assert_close(gradient, func.linear.weight.grad, rtol=1e-6, atol=1e-8)


def saved_bytes(model: torch.nn.Module, images: torch.Tensor) -> int:
    with SavedTensorBytes(exclude=model.parameters()) as saved:
        loss = model(images).sum()
    loss.backward()
    return saved.bytes


def test_saved_memory_grows_with_depth_and_solver_steps_but_not_with_the_adjoint() -> None:
    """Paper Table 1's memory column, measured: O(L) for ResNet and RK-Net, O(1) for the adjoint ODE-Net; the
    checkpointed ODE-Net keeps one state per step, between the two."""
    torch.manual_seed(0)
    images = torch.rand(4, 1, 28, 28)
    assert saved_bytes(ResNet(1, 10, 8, 6), images) > saved_bytes(ResNet(1, 10, 8, 2), images)
    loose, tight = {"rtol": 1e-2, "atol": 1e-2}, {"rtol": 1e-5, "atol": 1e-5}
    odenet = [saved_bytes(ODENet(1, 10, 8, solver(**tol)), images) for tol in (loose, tight)]
    rknet = [saved_bytes(ODENet(1, 10, 8, solver(gradient="backprop", **tol)), images) for tol in (loose, tight)]
    checkpointed = [saved_bytes(ODENet(1, 10, 8, solver(gradient="checkpoint", **tol)), images) for tol in (loose, tight)]
    assert odenet[0] == odenet[1]
    assert rknet[1] > rknet[0] > odenet[0]
    assert rknet[1] > checkpointed[1] > checkpointed[0] and rknet[0] > checkpointed[0]


def test_an_unknown_gradient_strategy_is_refused() -> None:
    with pytest.raises(ValueError, match="gradient='adjont'"):
        ODEBlock(TanhField(2), gradient="adjont")


def test_saved_bytes_count_each_storage_once() -> None:
    x = torch.randn(100, requires_grad=True)
    with SavedTensorBytes() as saved:
        y = x * x  # saves x twice
    assert saved.bytes == x.numel() * x.element_size()
    y.sum().backward()
