"""One run, one folder: a folder that cannot be written is found before training, a finished or interrupted run's
folder is refused unless the run resumes there, a folder held by a live run is refused, the folder's record of the
config is that of the run that trained there, and a folder whose run was killed before its first checkpoint is
started over."""

from __future__ import annotations

import copy
import json
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose as hydra_compose
from hydra import initialize_config_module
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict

from conftest import compose, node_run_executable, run_node_run, tiny_overrides
from node_experiments.errors import ConfigError, RunFolderError
from node_experiments.tasks import ClassificationTask
from node_experiments.training import train
from node_experiments.training.checkpoint import load_checkpoint
from node_experiments.training.run_folder import LOCK_FILE, RunFolderCheck
from node_experiments.training.run_record import write_record


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


def test_the_record_is_written_by_a_run_that_holds_its_folder_and_passed_every_check(
    finished: Path, tiny_data_root: Path, tmp_path: Path
) -> None:
    """``train(on_start=...)``, where node-run writes the folder's record of the config: never called by a refused
    run (a folder held by another run or holding its results, settings changed on resuming), called once by a run
    that trains, before it writes anything into the folder."""
    calls = []
    record = lambda: calls.append(sorted(path.name for path in tmp_path.joinpath("run").iterdir()))  # noqa: E731
    with pytest.raises(RunFolderError):
        train(mlp(tiny_data_root), finished, on_start=record)
    with pytest.raises(ConfigError, match="optimizer.lr: 0.1 -> 0.5"):
        train(mlp(tiny_data_root, f"trainer.resume={finished}", "optimizer.lr=0.5"), finished, on_start=record)
    assert calls == []
    train(mlp(tiny_data_root), tmp_path / "run", on_start=record)
    assert calls == [["checkpoints", LOCK_FILE]]  # the folder held, nothing of the run's written yet


def test_the_record_holds_what_hydra_would_have_written(tmp_path: Path) -> None:
    cfg = hydra_config("trainer.seed=7", f"hydra.run.dir={tmp_path}")
    task_cfg = copy.deepcopy(cfg)
    with open_dict(task_cfg):
        del task_cfg["hydra"]
    previous = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(cfg)
    try:
        write_record(tmp_path, task_cfg)
    finally:
        HydraConfig.instance().cfg = previous
    record = tmp_path / ".hydra"
    assert (record / "config.yaml").read_text() == OmegaConf.to_yaml(task_cfg)
    assert OmegaConf.load(record / "config.yaml").trainer.seed == 7
    assert OmegaConf.load(record / "overrides.yaml") == ["experiment=mnist_mlp", "trainer.seed=7"]
    assert OmegaConf.load(record / "hydra.yaml").hydra.run.dir == str(tmp_path)
    write_record(tmp_path / "elsewhere", task_cfg)  # no Hydra running (train() called from Python): nothing written
    assert not (tmp_path / "elsewhere").exists()


def killed_before_its_first_checkpoint(run_dir: Path, epochs: int = 1) -> None:
    """What ``kill -9`` during a run's first checkpoint leaves: its record, a metrics line, TensorBoard events, a
    half-written checkpoint and the lock of a process that is gone."""
    (run_dir / ".hydra").mkdir(parents=True)
    overrides = ["experiment=mnist_mlp", "trainer.resume=somewhere", "model.hidden=16"]
    (run_dir / ".hydra" / "overrides.yaml").write_text("".join(f"- {item}\n" for item in overrides))
    (run_dir / "metrics.jsonl").write_text('{"epoch": 1}\n' * epochs)
    (run_dir / "tb").mkdir()
    (run_dir / "tb" / "events.out.tfevents.1.host.1.0").write_bytes(b"events")
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "last.pt.tmp").write_bytes(b"PK\x03\x04")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (run_dir / LOCK_FILE).write_text(f"{gone.stdout.strip()} {socket.gethostname()}\n")


def test_a_run_killed_before_its_first_checkpoint_is_started_over_saying_so(
    tiny_data_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    killed_before_its_first_checkpoint(tmp_path)
    with pytest.raises(ConfigError) as refused:  # trainer.resume: nothing to continue; the message names the command
        train(mlp(tiny_data_root, f"trainer.resume={tmp_path}"), tmp_path)
    assert str(refused.value).endswith(f"Start that run over in its folder with: node-run experiment=mnist_mlp "
                                       f"model.hidden=16 hydra.run.dir={tmp_path}")  # fmt: skip
    with caplog.at_level(logging.WARNING):
        summary = train(mlp(tiny_data_root), tmp_path)  # what that command runs
    assert summary["status"] == "completed"
    assert "killed before its first checkpoint left (metrics.jsonl, tb/events.out.tfevents.1.host.1.0, " \
           "checkpoints/last.pt.tmp): that run cannot be continued, so it starts over here" in caplog.text
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1
    assert not (tmp_path / "tb" / "events.out.tfevents.1.host.1.0").exists()
    assert not (tmp_path / "checkpoints" / "last.pt.tmp").exists()


def test_a_folder_with_epochs_but_no_checkpoint_is_not_started_over(tiny_data_root: Path, tmp_path: Path) -> None:
    killed_before_its_first_checkpoint(tmp_path, epochs=3)  # a run with trainer.checkpoint=false: its metrics stay
    with pytest.raises(RunFolderError, match="It holds no checkpoint to continue from. Write this run elsewhere"):
        train(mlp(tiny_data_root), tmp_path)
    with pytest.raises(ConfigError, match="Start it again in a new folder: the same command without trainer.resume "
                                          "and without hydra.run.dir."):
        train(mlp(tiny_data_root, f"trainer.resume={tmp_path}"), tmp_path / "new")


def node_run_env() -> dict[str, str]:
    return {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
@pytest.mark.e2e
def test_two_runs_started_together_into_one_folder_record_the_one_that_trained(
    tiny_data_root: Path, tmp_path: Path
) -> None:
    """The issue's case, eight times: two node-run processes with seeds 1 and 2 started at once into one folder. One
    trains, the other is refused, and the folder's .hydra/config.yaml (what node-report reads) holds the seed that
    trained (before: the refused run's, in 2 of 3 tries)."""
    for attempt in range(8):
        run_dir = tmp_path / f"attempt{attempt}"
        processes = [
            subprocess.Popen([node_run_executable(), "experiment=mnist_mlp", *tiny_overrides(tiny_data_root, run_dir),
                              "model.hidden=16", "logger=none", f"trainer.seed={seed}"],
                             env=node_run_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for seed in (1, 2)
        ]  # fmt: skip
        ended = [(process.communicate(timeout=300)[1], process.returncode) for process in processes]
        assert sorted(code for _, code in ended) == [0, 1], ended
        refused = next(stderr for stderr, code in ended if code == 1)
        assert "Traceback" not in refused and ("is in use by process" in refused or "already holds" in refused)
        trained = load_checkpoint(run_dir / "checkpoints" / "last.pt")["config"]["trainer"]["seed"]
        assert OmegaConf.load(run_dir / ".hydra" / "config.yaml").trainer.seed == trained, f"attempt {attempt}"
        assert f"trainer.seed={trained}" in OmegaConf.load(run_dir / ".hydra" / "overrides.yaml")


KILLED_IN_FIRST_CHECKPOINT = """
import os, signal, sys
from node_experiments.training import trainer

def killed(state, path, keep_previous=False):  # kill -9 with the first checkpoint half written
    temporary = path.with_name(path.name + ".tmp")
    temporary.parent.mkdir(parents=True, exist_ok=True)
    temporary.write_bytes(b"PK" + bytes(64))
    os.kill(os.getpid(), signal.SIGKILL)

trainer.save_checkpoint = killed
from node_experiments.cli import main
sys.argv = ["node-run", *sys.argv[1:]]
main()
"""


@pytest.mark.slow
@pytest.mark.e2e
def test_a_run_killed_during_its_first_checkpoint_can_be_continued_by_the_command_named(
    tiny_data_root: Path, tmp_path: Path
) -> None:
    """The issue's case: after kill -9 during the first checkpoint's write, trainer.resume=DIR said "no
    checkpoint" and rerunning into DIR said to use trainer.resume=DIR. Now the resume names the command that starts
    the run over in its folder, and that command works."""
    args = ["experiment=mnist_mlp", *tiny_overrides(tiny_data_root, tmp_path), "model.hidden=16"]
    killed = subprocess.run([sys.executable, "-c", KILLED_IN_FIRST_CHECKPOINT, *args], env=node_run_env(),
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (tmp_path / "checkpoints" / "last.pt.tmp").is_file() and (tmp_path / "metrics.jsonl").read_text()
    resumed = run_node_run([*args, f"trainer.resume={tmp_path}"])
    assert resumed.returncode == 1 and "Traceback" not in resumed.stderr, resumed.stderr
    command = shlex.split(resumed.stderr.strip().split("Start that run over in its folder with: ")[1])
    assert command[0] == "node-run" and f"hydra.run.dir={tmp_path}" in command
    started_over = run_node_run(command[1:])
    assert started_over.returncode == 0, started_over.stderr
    assert "starts over here" in (tmp_path / "node-run.log").read_text()
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "completed"
