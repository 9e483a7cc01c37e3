"""One run, one folder: a folder that cannot be written is found before training, a finished or interrupted run's
folder is refused unless the run resumes there, and a folder held by a live run is refused."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose as hydra_compose
from hydra import initialize_config_module

from conftest import compose, run_node_run, tiny_overrides
from node_experiments.errors import RunFolderError
from node_experiments.tasks import ClassificationTask
from node_experiments.training import train
from node_experiments.training.run_folder import LOCK_FILE, RunFolderCheck


def mlp(data_root: Path, *overrides: str):
    base = [o for o in tiny_overrides(data_root, Path("unused")) if not o.startswith("hydra.")]
    return compose("mnist_mlp", [*base, "trainer.progress_bar=false", "logger.tensorboard=false", "model.hidden=16",
                                 *overrides])  # fmt: skip


@pytest.fixture(scope="module")
def finished(tiny_data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run's folder, with a record of its config where Hydra keeps it."""
    run_dir = tmp_path_factory.mktemp("finished")
    train(mlp(tiny_data_root), run_dir)
    (run_dir / ".hydra").mkdir()
    (run_dir / ".hydra" / "config.yaml").write_text("the finished run's config\n")
    return run_dir


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def hydra_config(*overrides: str):
    """A single run's composed config, with its ``hydra`` node, as Hydra's callbacks get it."""
    with initialize_config_module("node_experiments.configs", version_base="1.3"):
        return hydra_compose("config", overrides=["experiment=mnist_mlp", *overrides], return_hydra_config=True)


def test_a_finished_runs_folder_is_left_untouched(
    finished: Path, tiny_data_root: Path, capsys: pytest.CaptureFixture
) -> None:
    before = snapshot(finished)
    with pytest.raises(SystemExit):  # node-run's check, before Hydra writes its record into the folder
        RunFolderCheck().on_run_start(hydra_config(f"hydra.run.dir={finished}"))
    error = capsys.readouterr().err
    assert f"node-run: the run folder {finished} already holds the results of another run" in error
    assert f"trainer.resume={finished}" in error
    with pytest.raises(RunFolderError, match="summary.json, checkpoints/last.pt, checkpoints/best.pt, metrics.jsonl"):
        train(mlp(tiny_data_root), finished)
    assert snapshot(finished) == before


def test_resuming_in_place_with_other_settings_leaves_the_runs_record_untouched(
    finished: Path, tiny_data_root: Path
) -> None:
    before = snapshot(finished)
    result = run_node_run(["experiment=mnist_mlp", *tiny_overrides(tiny_data_root, finished), "model.hidden=16",
                           f"trainer.resume={finished}", "optimizer.lr=0.5"])  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "optimizer.lr: 0.1 -> 0.5" in result.stderr and "trainer.resume_changes=apply" in result.stderr
    assert snapshot(finished) == before  # .hydra/config.yaml still the finished run's


def test_a_run_may_resume_in_its_own_folder(finished: Path, tiny_data_root: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    train(mlp(tiny_data_root), run_dir)
    summary = train(mlp(tiny_data_root, "trainer.max_epochs=2", f"trainer.resume={run_dir}"), run_dir)
    assert summary["epochs"] == 2 and summary["resumed_from"] == str(run_dir / "checkpoints" / "last.pt")
    assert not (run_dir / LOCK_FILE).exists()
    with pytest.raises(RunFolderError, match="already holds the results"):  # resuming from elsewhere is not enough
        train(mlp(tiny_data_root, "trainer.max_epochs=2", f"trainer.resume={finished}"), run_dir)


def test_a_folder_held_by_a_live_run_is_refused_and_a_stale_lock_taken_over(
    tiny_data_root: Path, tmp_path: Path
) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / LOCK_FILE).write_text(f"{sleeper.pid} {socket.gethostname()}\n")
        with pytest.raises(RunFolderError, match=f"in use by process {sleeper.pid} on .*delete {tmp_path / LOCK_FILE}"):
            train(mlp(tiny_data_root), tmp_path)
    finally:
        sleeper.kill()
        sleeper.wait()
    summary = train(mlp(tiny_data_root), tmp_path)  # the lock's process is gone: a stale lock is taken over
    assert summary["status"] == "completed" and not (tmp_path / LOCK_FILE).exists()


def test_a_second_run_into_a_running_runs_folder_is_refused(
    tiny_data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_step = ClassificationTask.training_step
    seen = {}

    def step_and_try_a_second_run(self, model, batch):
        if not seen:
            seen["lock"] = (tmp_path / LOCK_FILE).read_text()
            with pytest.raises(RunFolderError, match="is in use by process") as refused:
                train(mlp(tiny_data_root), tmp_path)
            seen["refused"] = str(refused.value)
        return real_step(self, model, batch)

    monkeypatch.setattr(ClassificationTask, "training_step", step_and_try_a_second_run)
    train(mlp(tiny_data_root), tmp_path)
    assert seen["lock"] == f"{os.getpid()} {socket.gethostname()}\n" and seen["refused"]


def test_an_unwritable_checkpoint_folder_is_found_before_training(
    tiny_data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "checkpoints").write_text("a file where the checkpoint folder belongs")
    monkeypatch.setattr(ClassificationTask, "training_step", lambda *args: pytest.fail("training started"))
    with pytest.raises(RunFolderError, match=f"cannot write into {tmp_path / 'checkpoints'} .*nothing was trained"):
        train(mlp(tiny_data_root), tmp_path)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="permissions do not bind root")
def test_a_read_only_checkpoint_folder_is_found_before_training(tiny_data_root: Path, tmp_path: Path) -> None:
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints").chmod(0o500)
    try:
        with pytest.raises(RunFolderError, match="cannot write into .*checkpoints .*Permission denied"):
            train(mlp(tiny_data_root), tmp_path)
    finally:
        (tmp_path / "checkpoints").chmod(0o700)
