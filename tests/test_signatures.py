"""A config group built from a ``_target_`` takes the keys of that target's signature, and no others: a model
of one's own, with an argument no file of the project knows, is accepted by the validation boundary as soon as its
class exists (docs/extending.md, "A new model"), and a misspelt or missing argument is refused in its terms."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import torch

from conftest import compose
from node_experiments.errors import ConfigError
from node_experiments.models import flows
from node_experiments.tasks import build_task
from node_experiments.validation import solves_an_ode, validate
from node_experiments.validation.signatures import arguments

MODEL = '''
from torch import nn


class WideMLP(nn.Sequential):
    """A classifier with an argument no file of the project names: ``dropout``."""

    def __init__(self, in_channels: int, image_size: int, num_classes: int, hidden: int = 64, dropout: float = 0.0,
                 batch_norm: bool = False) -> None:
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout={dropout} must be a probability in [0, 1), e.g. dropout=0.5.")
        super().__init__(nn.Flatten(), nn.Linear(in_channels * image_size**2, hidden), nn.Dropout(dropout),
                         nn.ReLU(), nn.Linear(hidden, num_classes))
'''


@pytest.fixture
def own_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module, written for this test alone, holding a model class; its ``_target_``."""
    name = f"own_models_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(MODEL))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield f"{name}.WideMLP"
    sys.modules.pop(name, None)


def model_config(target: str, *overrides: str):
    model = [f"model._target_={target}", "~model.hidden", "+model.dropout=0.25"]
    return compose("mnist_mlp", [*model, *overrides])


def test_a_new_argument_of_a_new_model_is_a_key_at_once(own_model: str) -> None:
    validate(model_config(own_model))
    validate(model_config(own_model, "+model.hidden=16", "+model.batch_norm=true"))


@pytest.mark.parametrize(
    "override, message",
    [
        ("+model.droput=0.5", "model.droput=0.5 is not an argument of {target}: nothing reads it. Did you mean "
         "model.dropout=0.5?"),
        ("~model.image_size", "model has no image_size, an argument that {target} needs: set it, e.g. "
         "+model.image_size=VALUE."),
        ("+model.batch_norm=1", "model.batch_norm=1: WideMLP's argument batch_norm must be true or false, e.g. "
         "model.batch_norm=true."),
        ("model.in_channels=3", "model.in_channels=3 does not match data.channels=1"),
        ("model.dropout=abc", "model.dropout='abc': WideMLP's argument dropout must be a finite number, e.g. "
         "model.dropout=0.0."),
        ("+model.hidden=1.5", "model.hidden=1.5: WideMLP's argument hidden must be a whole number, e.g. model.hidden=64."),
    ],
)  # fmt: skip
def test_a_misspelt_missing_or_mistyped_argument_is_refused(own_model: str, override: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        validate(model_config(own_model, override))
    assert message.format(target=own_model) in str(error.value)


def test_a_range_the_model_checks_itself_is_named_as_its_key(own_model: str) -> None:
    """No rule of the boundary knows dropout's range; the model's own ValueError becomes the error naming the key."""
    cfg = model_config(own_model, "model.dropout=1.5")
    validate(cfg)
    with pytest.raises(ConfigError, match=r"^model.dropout=1.5 must be a probability in \[0, 1\), e.g. model.dropout=0.5.$"):
        build_task(cfg, torch.device("cpu")).build_model()
    assert isinstance(build_task(model_config(own_model), torch.device("cpu")).build_model()[2], torch.nn.Dropout)


def test_arguments_forwarded_to_the_base_class_are_keys() -> None:
    """PlanarCNF passes **flow on to ContinuousFlow: the base's keyword-only arguments are PlanarCNF's too, its
    positional `field` (which PlanarCNF builds itself) is not."""
    names = arguments(flows.PlanarCNF)
    assert {"width", "gated", "t1", "trace", "solver", "regularization"} <= set(names) and "field" not in names
    assert solves_an_ode("node_experiments.models.flows.PlanarCNF")
    assert not solves_an_ode("node_experiments.models.flows.PlanarNF")
    with pytest.raises(ConfigError, match=r"model.trac='exact' is not a setting of node-run: nothing reads it. Did you "
                                          r"mean model.trace='exact'\?"):  # fmt: skip
        validate(compose("cnf_two_moons", ["+model.trac=exact"]))


def test_a_task_takes_its_settings_as_constructor_arguments() -> None:
    validate(compose("cnf_two_moons", ["task.grid_points=50"]))
    with pytest.raises(ConfigError, match=r"task.grid_point=50 is not a setting of node-run: nothing reads it. Did "
                                          r"you mean task.grid_points=50\?"):  # fmt: skip
        validate(compose("cnf_two_moons", ["+task.grid_point=50"]))
    with pytest.raises(ConfigError, match=r"task.cfg=1 is not a setting of node-run"):  # passed by build_task itself
        validate(compose("spiral_rnn", ["+task.cfg=1"]))
