"""A sweep survives a bad job: on the basic and the joblib launchers, a job with a config error fails alone, the
other jobs finish with their summaries, and ``node-run -m`` exits non-zero at the end naming the failed job."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_node_run

pytestmark = pytest.mark.e2e

LAUNCHERS = {"basic": [], "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]}
BAD = "cuda:99"  # a device no machine has: job 1 fails validation wherever the test runs


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_one_bad_job_fails_alone(launcher: str, tiny_data_root: Path, tmp_path: Path) -> None:
    if launcher == "joblib":
        pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason="the `cluster` extra is not installed")
    result = run_node_run(
        ["-m", "experiment=mnist_mlp", "debug=quick", "data.download=false", f"trainer.device=cpu,{BAD},cpu",
         *LAUNCHERS[launcher], f"hydra.sweep.dir={tmp_path}"],
        env={"NODE_DATA_DIR": str(tiny_data_root)},
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    good, bad = [tmp_path / "0_mnist_mlp", tmp_path / "2_mnist_mlp"], tmp_path / "1_mnist_mlp"
    for job in good:
        summary = json.loads((job / "summary.json").read_text())
        assert summary["epochs"] == 1 and summary["device"] == "cpu"
    assert not (bad / "summary.json").exists() and not (bad / "checkpoints").exists()
    message = f"trainer.device='{BAD}'"
    assert message in (bad / "node-run.log").read_text(), "the job's log says why it failed"
    report = result.stderr[result.stderr.index("node-run: 1 of 3 sweep jobs failed") :]
    assert "(2 finished)" in report and f"job 1 (experiment=mnist_mlp debug=quick" in report and message in report
    assert "job 0" not in report and "job 2" not in report
