"""``node-report figure3d`` and ``node-report model-state`` on a tiny ODE-Net trained here (two epochs of 4
batches on the tiny MNIST, as tests/test_nfe_study.py trains it), and the NFE study run from the model file alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import compose
from node_experiments.reports.cli import main
from node_experiments.studies import run_study
from node_experiments.studies.trained_run import load_trained_run
from node_experiments.training import train
from node_experiments.training.checkpoint import load_checkpoint
from test_nfe_study import study_overrides, training_overrides


@pytest.fixture(scope="module")
def odenet_run(tiny_data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "odenet"
    train(compose("mnist_odenet", training_overrides(tiny_data_root)), run_dir)
    return run_dir


def history(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_figure3d_tabulates_nfe_over_training(odenet_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rknet = tmp_path / "rknet"  # counts no backward evaluations: not a run of Figure 3d
    rknet.mkdir()
    (rknet / "summary.json").write_text(json.dumps({"status": "completed", "test_error": 0.1}))
    (rknet / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "nfe/forward": 20.0, "nfe/backward": 0.0}) + "\n")
    assert main(["figure3d", str(odenet_run), str(rknet), "--figures", str(tmp_path / "figures")]) == 0
    printed = capsys.readouterr().out.splitlines()
    first, last = history(odenet_run)
    assert printed[:4] == [f"`{odenet_run.as_posix()}`:", "", "| epoch | NFE forward | NFE backward | training loss | "
                           "test error |", "|---|---|---|---|---|"]  # fmt: skip
    assert printed[4] == (f"| 1 | {first['nfe/forward']:.1f} | {first['nfe/backward']:.1f} | {first['train/loss']:.4f} "
                          f"| {100 * first['test/error']:.2f}% |")
    assert printed[5].startswith("| 2 | ") and printed[6] == "" and len(printed) == 8
    assert printed[7] == (
        f"NFE per training batch: forward {first['nfe/forward']:.1f} at epoch 1, {last['nfe/forward']:.1f} at epoch 2 "
        f"({last['nfe/forward'] / first['nfe/forward']:.2f}x); backward {first['nfe/backward']:.1f} at epoch 1, "
        f"{last['nfe/backward']:.1f} at epoch 2 ({last['nfe/backward'] / first['nfe/backward']:.2f}x)."
    )
    assert (tmp_path / "figures" / "figure3d_nfe_training.png").stat().st_size > 10_000
    assert main(["figure3d", str(rknet)]) == 1
    assert "no finished ODE-Net run with a metrics.jsonl under" in capsys.readouterr().err


def test_a_model_file_reproduces_the_trained_model(odenet_run: Path, tiny_data_root: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    """The model file holds the float32 state and the config, no more; the model and history rebuilt from it (among
    the run's records) are the run's, and the NFE study runs from it."""
    records = tmp_path / "records"
    assert main(["records", str(odenet_run), str(records)]) == 0
    model_file = records / "model.pt"
    assert main(["model-state", str(odenet_run), str(model_file)]) == 0
    assert capsys.readouterr().out.endswith(f"{model_file.stat().st_size / 2**20:.2f} MiB\n")
    saved = load_checkpoint(model_file, required=("model", "config"))  # verified against its SHA-256
    assert sorted(saved) == ["config", "model"]
    assert all(t.dtype == torch.float32 for t in saved["model"].values() if t.is_floating_point())

    original, rebuilt = (load_trained_run(location, torch.device("cpu")) for location in (odenet_run, model_file))
    images = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(original.model(images), rebuilt.model(images))
    assert rebuilt.history == original.history == history(odenet_run) and len(rebuilt.history) == 2
    summary = run_study(compose("mnist_nfe_study", [*study_overrides(tiny_data_root, model_file),
                                                    "study.tolerances=[1e-1]", "study.num_batches=1",
                                                    "study.memory.enabled=false", "logger.tensorboard=false"]),
                        tmp_path / "study")  # fmt: skip
    assert summary["trained_epochs"] == 2 and summary["table"][0]["nfe_forward"] > 0


def test_model_state_refuses_a_large_file_or_a_folder_without_a_checkpoint(odenet_run: Path, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture) -> None:
    assert main(["model-state", str(odenet_run), str(tmp_path / "model.pt"), "--limit-mib", "0.001"]) == 1
    assert "over --limit-mib 0.001" in capsys.readouterr().err and not (tmp_path / "model.pt").exists()
    assert main(["model-state", str(tmp_path), str(tmp_path / "model.pt")]) == 2
    assert "RUN=" in capsys.readouterr().err and not (tmp_path / "model.pt").exists()
