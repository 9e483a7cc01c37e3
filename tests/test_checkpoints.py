"""Checkpoints: a SHA-256 of the payload, verified on every load (flipped bytes that ``torch.load`` would read are
refused in one sentence naming the file, offering the intact checkpoint beside it, from which resuming works);
``last.pt``'s predecessor kept as ``previous.pt``; ``best.pt`` the epoch with the best test metric; checkpoints
written before the digest still load."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from conftest import compose, tiny_overrides
from node_experiments.errors import CheckpointError, ConfigError
from node_experiments.training import train
from node_experiments.training.checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint


def mlp(data_root: Path, *overrides: str):
    base = [o for o in tiny_overrides(data_root, Path("unused")) if not o.startswith("hydra.")]
    return compose("mnist_mlp", [*base, "trainer.progress_bar=false", "logger.tensorboard=false", "model.hidden=16",
                                 *overrides])  # fmt: skip


@pytest.fixture(scope="module")
def three_epochs(tiny_data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("three_epochs")
    train(mlp(tiny_data_root, "trainer.max_epochs=3", "optimizer.lr=0.3"), run_dir)
    return run_dir


def checkpoints(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def test_last_previous_and_best(three_epochs: Path) -> None:
    last, previous, best = (load_checkpoint(checkpoints(three_epochs) / name)
                            for name in ("last.pt", "previous.pt", "best.pt"))  # fmt: skip
    assert (last["position"]["epoch"], previous["position"]["epoch"]) == (3, 2)
    errors = [json.loads(line)["test/error"] for line in (three_epochs / "metrics.jsonl").read_text().splitlines()]
    assert best["position"]["epoch"] == errors.index(min(errors)) + 1  # the first epoch with the lowest test error
    assert best["position"]["history"][-1]["test/error"] == min(errors)


def flipped(data: bytes, offset: int, count: int = 20) -> bytes:
    return data[:offset] + bytes(byte ^ 0xFF for byte in data[offset : offset + count]) + data[offset + count :]


def test_flipped_bytes_anywhere_are_refused_naming_the_file(three_epochs: Path, tmp_path: Path) -> None:
    good = (checkpoints(three_epochs) / "last.pt").read_bytes()
    path = tmp_path / "last.pt"
    for offset in range(0, len(good) - 20, len(good) // 25):
        path.write_bytes(flipped(good, offset))
        with pytest.raises(CheckpointError, match=f"^trainer.resume: the checkpoint {path} "):
            load_checkpoint(path)


def test_a_damaged_last_checkpoint_offers_the_previous_one_which_resumes(
    three_epochs: Path, tiny_data_root: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(three_epochs, run_dir)
    last, previous = checkpoints(run_dir) / "last.pt", checkpoints(run_dir) / "previous.pt"
    data = last.read_bytes()
    last.write_bytes(flipped(data, len(data) // 2))  # in the weights: torch.load reads it without complaint
    resumed = mlp(tiny_data_root, "trainer.max_epochs=4", "optimizer.lr=0.3", f"trainer.resume={run_dir}")
    with pytest.raises(CheckpointError) as refused:
        train(resumed, run_dir)
    message = str(refused.value)
    assert message.startswith(f"trainer.resume: the checkpoint {last} (") and "is damaged" in message, message
    assert message.endswith(f"{previous}, of the end of epoch 2, is intact: continue from it with "
                            f"trainer.resume={previous}."), message  # fmt: skip
    assert "\n" not in message
    with pytest.raises(CheckpointError, match=f"study.checkpoint=.*previous.pt"):
        load_checkpoint(last, key="study.checkpoint", required=("model", "config"))

    summary = train(mlp(tiny_data_root, "trainer.max_epochs=4", "optimizer.lr=0.3", f"trainer.resume={previous}"),
                    run_dir)  # fmt: skip
    assert summary["status"] == "completed" and summary["epochs"] == 4
    assert load_checkpoint(last)["position"]["epoch"] == 4
    assert load_checkpoint(previous)["position"]["epoch"] == 3, "the damaged file was not kept as previous.pt"


def test_a_missing_last_checkpoint_offers_the_one_beside_it(three_epochs: Path, tmp_path: Path) -> None:
    shutil.copytree(checkpoints(three_epochs), tmp_path / "checkpoints")
    (tmp_path / "checkpoints" / "last.pt").unlink()
    with pytest.raises(ConfigError, match=r"no checkpoint at .*last.pt\. .*previous.pt, of the end of epoch 2, is "
                                          r"intact: continue from it with trainer.resume="):
        resolve_checkpoint(tmp_path)


def test_a_checkpoint_written_before_the_digest_still_loads(three_epochs: Path, tmp_path: Path) -> None:
    state = load_checkpoint(checkpoints(three_epochs) / "last.pt")
    torch.save(state, tmp_path / "old.pt")  # the format of earlier versions: the state itself
    loaded = load_checkpoint(tmp_path / "old.pt")
    assert all(torch.equal(loaded["model"][name], state["model"][name]) for name in state["model"])
    save_checkpoint(state, tmp_path / "new.pt")
    assert torch.load(tmp_path / "new.pt", weights_only=True)["format"] == "node-run checkpoint"
