"""Resuming means the same run: other settings are refused with their list, or applied and recorded
(``trainer.resume_changes=apply``); a checkpoint that cannot be read is a sentence naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import compose, tiny_overrides
from node_experiments.errors import CheckpointError, ConfigError
from node_experiments.studies import run_study
from node_experiments.training import train
from node_experiments.training.checkpoint import load_checkpoint
from node_experiments.training.resume import changed_settings

QUIET = ["trainer.progress_bar=false", "logger.tensorboard=false"]


def mlp(data_root: Path, *overrides: str):
    """The MLP on the tiny data: SGD with momentum, lr 0.1, multistep schedule (milestones 60, 100, 140)."""
    base = [o for o in tiny_overrides(data_root, Path("unused")) if not o.startswith("hydra.")]
    return compose("mnist_mlp", [*base, *QUIET, "model.hidden=16", *overrides])


@pytest.fixture(scope="module")
def one_epoch(tiny_data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("one_epoch")
    train(mlp(tiny_data_root), run_dir)
    return run_dir


@pytest.mark.parametrize(
    "overrides, listed",
    [
        (["optimizer.lr=0.5"], ["optimizer.lr: 0.1 -> 0.5"]),
        (["scheduler=exponential"], ["scheduler._target_: 'torch.optim.lr_scheduler.MultiStepLR' -> "
                                     "'torch.optim.lr_scheduler.ExponentialLR'", "scheduler.gamma"]),
        (["trainer.seed=3", "model.hidden=16"], ["trainer.seed: 0 -> 3"]),
    ],
)
def test_resuming_with_other_settings_is_refused_with_their_list(
    overrides: list[str], listed: list[str], one_epoch: Path, tiny_data_root: Path, tmp_path: Path
) -> None:
    cfg = mlp(tiny_data_root, "trainer.max_epochs=2", f"trainer.resume={one_epoch}", *overrides)
    with pytest.raises(ConfigError) as refused:
        train(cfg, tmp_path / "resumed")
    message = str(refused.value)
    assert message.startswith(f"trainer.resume: the checkpoint {one_epoch / 'checkpoints' / 'last.pt'}"), message
    assert all(entry in message for entry in listed), message
    assert "trainer.resume_changes=apply" in message and "model.hidden" not in message
    assert not (tmp_path / "resumed" / "metrics.jsonl").exists()  # nothing trained, nothing written


def test_settings_that_do_not_change_the_numbers_may_differ() -> None:
    saved = {"trainer": {"max_epochs": 1, "resume": None, "device": "cpu"}, "logger": {"tensorboard": True},
             "data": {"root": "a", "batch_size": 16}, "optimizer": {"lr": 0.1}}  # fmt: skip
    current = {"trainer": {"max_epochs": 5, "resume": "run", "device": "cuda", "resume_changes": "apply"},
               "logger": {"tensorboard": False}, "data": {"root": "b", "batch_size": 16}, "optimizer": {"lr": 0.1}}  # fmt: skip
    assert changed_settings(saved, current) == {}
    current["data"]["batch_size"], current["optimizer"]["momentum"] = 32, 0.9
    assert changed_settings(saved, current) == {"data.batch_size": [16, 32], "optimizer.momentum": ["<absent>", 0.9]}


def test_applied_changes_take_effect_and_are_recorded(one_epoch: Path, tiny_data_root: Path, tmp_path: Path) -> None:
    first = load_checkpoint(one_epoch / "checkpoints" / "last.pt")
    cfg = mlp(tiny_data_root, "trainer.max_epochs=3", f"trainer.resume={one_epoch}", "optimizer.lr=0.5",
              "scheduler=exponential", "scheduler.gamma=0.5", "trainer.resume_changes=apply")  # fmt: skip
    summary = train(cfg, tmp_path)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    # The new schedule replayed from the start: 0.5 x 0.5 in epoch 2, x 0.25 in epoch 3.
    assert [record["lr"] for record in records] == pytest.approx([0.1, 0.25, 0.125])
    (change,) = summary["settings_changed"]
    assert (change["epoch"], change["step"]) == (1, first["position"]["step"])
    assert change["changes"]["optimizer.lr"] == [0.1, 0.5]
    assert change["changes"]["scheduler._target_"][1] == "torch.optim.lr_scheduler.ExponentialLR"
    saved = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert saved["config"]["optimizer"]["lr"] == 0.5 and saved["settings_changed"] == summary["settings_changed"]
    assert saved["optimizer"]["param_groups"][0]["initial_lr"] == 0.5
    assert saved["optimizer"]["state"], "the momentum buffers are carried over"


def test_another_optimizer_starts_with_a_fresh_state(one_epoch: Path, tiny_data_root: Path, tmp_path: Path) -> None:
    cfg = mlp(tiny_data_root, "trainer.max_epochs=2", f"trainer.resume={one_epoch}", "optimizer=adam",
              "optimizer.lr=1e-3", "trainer.resume_changes=apply")  # fmt: skip
    summary = train(cfg, tmp_path)
    assert summary["status"] == "completed" and summary["epochs"] == 2
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")["optimizer"]["state"]
    assert all(int(entry["step"]) == 4 for entry in state.values())  # Adam's own 4 steps of epoch 2


def test_a_bad_resume_changes_value_is_named(tiny_data_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="trainer.resume_changes='always' is not a choice: use refuse .* or apply"):
        train(mlp(tiny_data_root, "trainer.resume_changes=always"), tmp_path)


def damaged_copies(run_dir: Path, folder: Path) -> dict[str, Path]:
    """Run folders holding an empty, a truncated and a garbage last.pt."""
    good = (run_dir / "checkpoints" / "last.pt").read_bytes()
    contents = {"empty": b"", "truncated": good[: len(good) // 2], "garbage": b"not a checkpoint at all" * 40}
    copies = {}
    for name, content in contents.items():
        (folder / name / "checkpoints").mkdir(parents=True)
        (folder / name / "checkpoints" / "last.pt").write_bytes(content)
        copies[name] = folder / name
    return copies


def test_a_damaged_checkpoint_is_a_sentence_naming_the_file(
    one_epoch: Path, tiny_data_root: Path, tmp_path: Path
) -> None:
    for name, run_dir in damaged_copies(one_epoch, tmp_path).items():
        checkpoint = run_dir / "checkpoints" / "last.pt"
        cfg = mlp(tiny_data_root, "trainer.max_epochs=2", f"trainer.resume={run_dir}")
        with pytest.raises(CheckpointError, match=f"trainer.resume: the checkpoint {checkpoint} .* cannot be read"):
            train(cfg, tmp_path / f"resumed_{name}")
        study = compose("mnist_nfe_study", [f"study.checkpoint={run_dir}", f"data.root={tiny_data_root}"])
        with pytest.raises(CheckpointError, match=f"study.checkpoint: the checkpoint {checkpoint} .* cannot be read"):
            run_study(study, tmp_path / f"study_{name}")
    torch.save({"model": {}}, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match="partial.pt is not a checkpoint written by node-run's trainer .*optimizer"):
        train(mlp(tiny_data_root, f"trainer.resume={tmp_path / 'partial.pt'}"), tmp_path / "resumed_partial")



def test_a_model_of_another_shape_is_one_paragraph(one_epoch: Path, tiny_data_root: Path, tmp_path: Path) -> None:
    """Before: about 40 lines of torch's size mismatches."""
    cfg = mlp(tiny_data_root, "trainer.max_epochs=2", f"trainer.resume={one_epoch}", "model.hidden=32",
              "trainer.resume_changes=apply")  # fmt: skip
    with pytest.raises(ConfigError) as refused:
        train(cfg, tmp_path)
    message = str(refused.value)
    assert message.startswith(f"trainer.resume: the checkpoint {one_epoch / 'checkpoints' / 'last.pt'} does not fit "
                              "this run's model: 3 of its 4 tensors have other shapes (e.g. ")  # fmt: skip
    assert "as model.hidden: 16 -> 32 changes its shape" in message and "\n" not in message and len(message) < 700


@pytest.mark.parametrize("mode", ["refuse", "apply"])
def test_a_checkpoint_of_another_model_is_one_paragraph(
    mode: str, one_epoch: Path, tiny_data_root: Path, tmp_path: Path
) -> None:
    """An ODE-Net config resumed from an MLP's checkpoint; before: a list of 1,500 characters of changed keys."""
    cfg = compose("mnist_odenet", [f"data.root={tiny_data_root}", "data.download=false", *QUIET,
                                   "trainer.max_epochs=2", f"trainer.resume={one_epoch}",
                                   f"trainer.resume_changes={mode}"])  # fmt: skip
    with pytest.raises(ConfigError) as refused:
        train(cfg, tmp_path)
    message = str(refused.value)
    assert "is of another kind of run: model._target_: 'node_experiments.models.mnist.MLP' -> " \
           "'node_experiments.models.mnist.ODENet' (and " in message
    assert "start this run afresh without trainer.resume" in message and "\n" not in message and len(message) < 600


def test_a_long_list_of_changes_is_cut_short() -> None:
    from node_experiments.training.resume import _refusal

    changes = {f"model.key{i}": [i, i + 1] for i in range(10)}
    changes.update({"solver.rtol": [1e-3, 1e-4], "model.solver.rtol": [1e-3, 1e-4]})
    message = _refusal(Path("last.pt"), changes, 3)
    assert "model.key0: 0 -> 1; " in message and "(and 5 more)" in message and "model.solver.rtol" not in message
