"""``node-report``: the tables read the runs' summary.json, pick their own kind of run and put the paper's numbers
beside ours; a mistake is one line on stderr with a fix and a non-zero exit status. The reports on real tiny runs
are tested beside the runs they read: table1 in test_cli.py, table2 in test_table2_grid.py and (on records)
test_reports_records.py, figure3 in test_nfe_study.py, figure3d and model-state in test_reports_odenet.py, flows in
test_flows.py; records in test_reports_records.py, pages in test_reports_pages.py."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from node_experiments.reports.cli import main
from node_experiments.training.run_logger import write_json

ROOT = Path(__file__).resolve().parents[1]


def classification_summary(experiment: str, data: str = "mnist", **changes) -> dict:
    """A summary.json of a finished classification run, with the keys the trainer writes."""
    return {
        "experiment": experiment, "data": data, "epochs": 2, "test_error": 0.0123, "test_accuracy": 0.9877,
        "params": 208_266, "nfe_forward": 26.0, "nfe_backward": 32.5, "peak_memory_bytes": 3 * 2**20,
        "epoch_time_s": 61.0, "train_cpu_s": 100.0, "train_time_s": 122.0, "device": "cpu", "torch_threads": 1,
        "status": "completed", **changes,
    }  # fmt: skip


def node_report(*args: str) -> subprocess.CompletedProcess:
    """``python -m node_experiments.reports ARGS`` in a subprocess (the installed ``node-report`` runs the same)."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "node_experiments.reports", *args], env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def test_table1_has_a_row_per_finished_classification_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    runs = {
        "a/odenet": classification_summary("mnist_odenet"),
        "a/resnet": classification_summary("mnist_resnet", data="fashion_mnist", nfe_forward=0.0, nfe_backward=0.0),
        "b/mlp": classification_summary("mnist_mlp", status="diverged"),  # stopped early: left out
        "b/flow": {"experiment": "nf_density_matching", "final_loss": 1.0, "status": "completed"},  # not a classifier
    }
    for name, summary in runs.items():
        (tmp_path / name).mkdir(parents=True)
        write_json(tmp_path / name / "summary.json", summary)
    hydra = tmp_path / "a/odenet/.hydra"  # the record node-run writes: the seed, and what the command line set
    hydra.mkdir()
    (hydra / "config.yaml").write_text("trainer:\n  seed: 3\n")
    (hydra / "overrides.yaml").write_text("- experiment=mnist_odenet\n- ++trainer.seed=3\n- solver.rtol=0.01\n"
                                         "- trainer.resume=a/odenet\n")  # resumed: the same run, not a setting
    output = tmp_path / "pages" / "table1.md"

    assert main(["table1", str(tmp_path / "a"), str(tmp_path / "b"), "--output", str(output)]) == 0
    printed = capsys.readouterr()
    assert output.read_text() == printed.out and f"wrote {output}" in printed.err
    lines = [line for line in printed.out.splitlines() if line.startswith("| ")]
    rows = [[cell.strip() for cell in line.split("|")[1:-1]] for line in lines]
    assert rows[0][:7] == ["Model", "Data", "Epochs", "Seed", "Settings", "Test error", "(paper)"]
    assert [row[0] for row in rows[1:]] == ["ResNet", "ODE-Net"], "the paper's order; diverged and other runs out"
    resnet, odenet = rows[1:]
    assert odenet[3:5] == ["3", "`solver.rtol=0.01`"] and resnet[3:5] == ["-", ""]
    resnet, odenet = resnet[:3] + resnet[5:], odenet[:3] + odenet[5:]
    assert odenet[3:7] == ["1.23%", "0.42%", "0.208M", "0.22M"] and odenet[7:11] == ["26.0", "32.5", "3.0 MiB", "O(1)"]
    assert odenet[11:] == ["61 s", "50 s", "O(L~)", "cpu, 1 thread"]
    assert resnet[1] == "fashion_mnist" and resnet[4] == resnet[6] == resnet[10] == "", "no paper figures off MNIST"


@pytest.mark.parametrize("report", ["table1", "table2", "figure3", "figure3d", "flows"])
def test_a_folder_without_runs_of_the_report_is_one_line(report: str, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "multirun.yaml").write_text("hydra: {overrides: {task: []}}\n")  # an empty grid
    assert main([report, str(tmp_path / "sweep")]) == 1
    (message,) = capsys.readouterr().err.splitlines()
    assert message.startswith(f"node-report {report}: no finished ") and str(tmp_path / "sweep") in message
    assert "node-run" in message, "the fix: the command that makes such runs"


def test_a_missing_folder_is_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["table1", str(tmp_path), str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err == (f"node-report table1: not a folder: {tmp_path / 'nowhere'}. Give run folders "
                                       "or the folders holding them (a sweep folder, outputs/).\n")


def test_an_unknown_report_is_one_line_with_the_choices(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit:
        main(["tabel1", "outputs"])
    assert exit.value.code == 2
    printed = capsys.readouterr()
    assert printed.out == "" and printed.err == (
        "node-report: argument REPORT: invalid choice: 'tabel1' (choose from 'table1', 'table2', 'figure3', "
        "'figure3d', 'flows', 'beyond', 'all', 'records', 'model-state', 'pages'). See node-report --help.\n"
    )


def test_the_module_command_answers_a_mistake_without_a_stack_trace(tmp_path: Path) -> None:
    """``python -m node_experiments.reports`` (the installed ``node-report`` calls the same ``main``)."""
    empty = node_report("flows", str(tmp_path))
    assert empty.returncode == 1 and empty.stdout == ""
    assert empty.stderr.startswith(f"node-report flows: no finished density-matching run under {tmp_path}.")
    assert len(empty.stderr.splitlines()) == 1


def test_the_console_script_is_the_module_command() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, function = scripts["node-report"].split(":")
    assert getattr(importlib.import_module(module), function) is main


def study_summary() -> dict:
    """A summary.json of an NFE study run (``studies.nfe_study``), two tolerances, no memory rows."""
    entry = {"nfe_forward": 14.0, "nfe_backward": 14.0, "error_max_abs": 3e-2, "error_rel_rms": 1e-3,
             "forward_s": 0.4, "time_relative": 1.0, "accuracy": 0.9}  # fmt: skip
    return {
        "experiment": "mnist_nfe_study", "checkpoint": "odenet/checkpoints/last.pt", "trained_epochs": 4,
        "method": "dopri5", "images": 512, "device": "cpu", "backward_forward_ratio": 0.92,
        "backward_forward_ratio_seminorm": None, "memory": [],
        "reference": {"method": "dopri5", "tolerance": 1e-8, "self_error": 1e-4},
        "table": [{**entry, "tolerance": 1e-1, "time_relative": 0.5},
                  {**entry, "tolerance": 1e-5, "nfe_forward": 44.0}],
    }  # fmt: skip


def test_all_writes_every_report_that_has_runs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """One outputs folder, runs of two kinds: table1.md and figure3.md as their own commands print them, the
    other reports named as skipped with the reason."""
    outputs, pages = tmp_path / "outputs", tmp_path / "pages"
    for name, summary in {"multirun/x/0_mnist_odenet": classification_summary("mnist_odenet"),
                          "nfe_study/run": study_summary()}.items():  # fmt: skip
        (outputs / name).mkdir(parents=True)
        write_json(outputs / name / "summary.json", summary)

    assert main(["all", str(outputs), "--output-dir", str(pages), "--figures", str(pages / "figures")]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed == [f"- table1: {pages / 'table1.md'}",
                       f"- table2: skipped: no node-run -m grid of spiral runs under {outputs}",
                       f"- figure3: {pages / 'figure3.md'}",
                       f"- figure3d: skipped: no finished ODE-Net run with a metrics.jsonl under {outputs}. Make them "
                       "first: node-run experiment=mnist_odenet trainer.max_epochs=10 scheduler=multistep_scaled",
                       f"- flows: skipped: no finished density-matching run under {outputs}. Make them first: "
                       "node-run -m experiment=nf_density_matching data.target=U1,U2,U3 model.layers=2,8,32 (and the "
                       "same with experiment=cnf_density_matching model.width=2,8,32).",
                       f"- beyond: skipped: no finished ffjord_* run under {outputs}"]  # fmt: skip
    for name, paths in (("table1", [outputs]), ("figure3", [outputs / "nfe_study" / "run"])):
        assert main([name, *map(str, paths)]) == 0
        assert (pages / f"{name}.md").read_text() == capsys.readouterr().out
    assert "| 1e-1 | 14 | 14 | 3.00e-02 | 1.00e-03 | 0.40 s | 0.50 | 90.00% |" in (pages / "figure3.md").read_text()
    assert "| 0.92 | about 0.5 |" in (pages / "figure3.md").read_text()
    assert main(["all", str(tmp_path / "pages"), "--output-dir", str(pages)]) == 1
    assert "no finished run of any report under" in capsys.readouterr().err


def test_flows_from_records_names_what_needs_the_checkpoints(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Records keep no checkpoint: the density grid says so; the table and the loss figure need none."""
    run = tmp_path / "records" / "nf_u1_k2"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text(
        "model: {_target_: node_experiments.models.flows.PlanarNF, layers: 2}\n"
        "data: {target: U1, batches_per_epoch: 50}\noptimizer: {lr: 0.01}\n"
    )
    write_json(run / "summary.json", {"status": "completed", "experiment": "nf_density_matching", "epochs": 10,
                                      "final_loss": -0.862, "test_kl": 1.015, "train_time_s": 11.0})  # fmt: skip
    figures = tmp_path / "figures"
    assert main(["flows", str(tmp_path / "records"), "--figures", str(figures)]) == 1
    assert "holds no checkpoints/last.pt and no model.pt" in capsys.readouterr().err
    assert main(["flows", str(tmp_path / "records"), "--figures", str(figures), "--no-densities"]) == 0
    assert "| U1 | -0.862 (1.015) |" in capsys.readouterr().out and (figures / "figure4_loss.png").is_file()
