"""The NFE study (Figure 3) and the memory study, on a tiny ODE-Net trained here for a few steps on tiny data.

The module trains the network once through the shared trainer (two epochs of 4 batches, so that the training
history has two records), then runs ``node-run experiment=mnist_nfe_study`` on it for three tolerances; the
tests read what that run wrote.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from conftest import compose, run_node_run, tiny_overrides
from node_experiments.errors import ConfigError
from node_experiments.studies import run_study
from node_experiments.studies.memory_study import ODE_NET, RESNET, RK_NET
from node_experiments.ode import record_stats
from node_experiments.reports.cli import main as report_main
from node_experiments.studies.nfe_study import backward_nfe, fit_through_origin, forward_pass
from node_experiments.studies.trained_run import load_trained_run
from node_experiments.training import train
from node_experiments.training.checkpoint import CHECKPOINT_DIR, LAST, save_checkpoint

TOLERANCES = [1e-1, 1e-3, 1e-5]
FIGURES = ["figure3", "figure3a_nfe_error", "figure3b_nfe_time", "figure3c_backward_forward",
           "figure3d_nfe_training", "memory"]  # fmt: skip
TINY_MODEL = ["model.width=8"]


def training_overrides(data_root: Path) -> list[str]:
    """The tiny-data overrides of conftest, for an in-process run (no hydra.* keys), over two epochs."""
    kept = [o for o in tiny_overrides(data_root, Path(".")) if not o.startswith(("hydra.", "trainer.max_epochs"))]
    return [*kept, *TINY_MODEL, "trainer.max_epochs=2", "logger.tensorboard=false"]


def study_overrides(data_root: Path, checkpoint: Path) -> list[str]:
    return [
        f"study.checkpoint={checkpoint}",
        f"study.tolerances=[{','.join(map(str, TOLERANCES))}]",
        "study.batch_size=16",
        "study.num_batches=2",
        "study.timing_repeats=1",
        "study.memory.resnet_blocks=[1,2,4]",
        f"data.root={data_root}",
        "data.download=false",
    ]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Run this module's torch work, and the node-run it starts, on one thread, then restore the setting.

    The tensors here are tiny, so a second thread only adds overhead; on a CPU shared with other processes it made
    this module take 264 s instead of 40 s.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained_run(tiny_data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of a tiny mnist_odenet run trained for 2 epochs (8 steps)."""
    run_dir = tmp_path_factory.mktemp("odenet")
    train(compose("mnist_odenet", training_overrides(tiny_data_root)), run_dir)
    return run_dir


@pytest.fixture(scope="module")
def study_run(trained_run: Path, tiny_data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of ``node-run experiment=mnist_nfe_study`` on ``trained_run``, for three tolerances."""
    run_dir = tmp_path_factory.mktemp("study")
    args = ["experiment=mnist_nfe_study", *study_overrides(tiny_data_root, trained_run), f"hydra.run.dir={run_dir}"]
    result = run_node_run(args)
    assert result.returncode == 0, result.stderr
    return run_dir


def read_csv(path: Path) -> list[dict[str, float | str]]:
    def value(text: str) -> float | str:
        try:
            return float(text)
        except ValueError:
            return text

    with open(path, newline="", encoding="utf-8") as file:
        return [{key: value(text) for key, text in row.items()} for row in csv.DictReader(file)]


@pytest.mark.e2e
def test_the_study_writes_its_tables_and_figures(study_run: Path) -> None:
    table = read_csv(study_run / "nfe_study.csv")
    assert [row["tolerance"] for row in table] == TOLERANCES
    for column in ("nfe_forward", "nfe_backward", "nfe_backward_seminorm", "error_max_abs", "error_rel_rms",
                   "time_relative", "accuracy"):  # fmt: skip
        assert all(isinstance(row[column], float) for row in table), column
    assert len(read_csv(study_run / "nfe_study_batches.csv")) == 2 * len(TOLERANCES)
    for name in FIGURES:
        assert (study_run / "figures" / f"{name}.png").stat().st_size > 10_000, name
    assert any((study_run / "tb").iterdir()), "the figures also go to TensorBoard"
    assert table[-1]["time_relative"] == 1.0, "times are relative to the tightest tolerance"


@pytest.mark.e2e
def test_tighter_tolerance_means_smaller_error_and_more_evaluations(study_run: Path) -> None:
    table = read_csv(study_run / "nfe_study.csv")  # loosest tolerance first
    errors = [row["error_max_abs"] for row in table]
    forward = [row["nfe_forward"] for row in table]
    assert all(tight <= loose for loose, tight in zip(errors, errors[1:])), errors
    assert all(tight >= loose for loose, tight in zip(forward, forward[1:])), forward
    assert errors[-1] < 0.1 * errors[0] and forward[-1] > forward[0]
    assert all(row["nfe_backward"] > 0 and row["nfe_backward_seminorm"] > 0 for row in table)


@pytest.mark.e2e
def test_the_reported_ratio_is_the_least_squares_fit_of_the_batches(study_run: Path) -> None:
    batches = read_csv(study_run / "nfe_study_batches.csv")
    summary = json.loads((study_run / "summary.json").read_text())
    forward = [row["nfe_forward"] for row in batches]
    for column, key in (("nfe_backward", "backward_forward_ratio"),
                        ("nfe_backward_seminorm", "backward_forward_ratio_seminorm")):  # fmt: skip
        assert summary[key] == pytest.approx(fit_through_origin(forward, [row[column] for row in batches]))
    assert summary["trained_epochs"] == 2, "panel (d) reads the training run's two epochs"


@pytest.mark.e2e
def test_node_report_figure3_tabulates_the_study(study_run: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    """A row per tolerance from the study's own table, its fitted ratio beside the paper's 0.5, the memory rows
    beside the paper's orders, and the study's figures copied out."""
    argv = ["figure3", str(study_run), "--figures", str(tmp_path / "figures"), "--output", str(tmp_path / "f3.md")]
    assert report_main(argv) == 0
    printed = capsys.readouterr().out
    assert (tmp_path / "f3.md").read_text() == printed
    rows = [line.split(" | ") for line in printed.splitlines() if line.startswith("| ")]
    by_tolerance = {row[0]: row for row in rows if row[0] in ("| 1e-1", "| 1e-3", "| 1e-5")}
    for entry in read_csv(study_run / "nfe_study.csv"):
        row = by_tolerance[f"| {entry['tolerance']:.0e}".replace("e-0", "e-")]
        assert row[1:4] == [f"{entry[c]:.0f}" for c in ("nfe_forward", "nfe_backward", "nfe_backward_seminorm")]
        assert row[4] == f"{entry['error_max_abs']:.2e}" and row[-1] == f"{100 * entry['accuracy']:.2f}% |"
    summary = json.loads((study_run / "summary.json").read_text())
    ratio = f"{summary['backward_forward_ratio']:.2f} ({summary['backward_forward_ratio_seminorm']:.2f} with the"
    assert f"fitted through the origin | {ratio} seminorm) | about 0.5 |" in printed
    paper = [row[-1] for row in rows if row[0] in (f"| {ODE_NET}", f"| {RK_NET}", f"| {RESNET}")]
    assert paper == ["O(1) |"] * 3 + ["O(L~) |"] * 3 + ["O(L) |"] * 3
    for name, copy in (("figure3", "nfe_study_figure3"), ("memory", "nfe_study_memory")):
        copied = (tmp_path / "figures" / f"{copy}.png").read_bytes()
        assert copied == (study_run / "figures" / f"{name}.png").read_bytes()


def test_each_pass_is_counted_alone(trained_run: Path) -> None:
    """No count leaks from one pass into the next (the paper's backward/forward artefact)."""
    trained = load_trained_run(trained_run, torch.device("cpu"))
    images, labels = torch.rand(8, 1, 28, 28), torch.arange(8) % 10
    counts = [(forward_pass(trained.model, trained.ode_block, images, 1).nfe,
               backward_nfe(trained.model, images, labels)) for _ in range(2)]  # fmt: skip
    (forward, backward), again = counts
    assert again == (forward, backward) and forward > 0 and backward > 0
    with record_stats() as alone:
        trained.model(images)
    assert (alone.nfe_forward, alone.nfe_backward) == (forward, 0)


def test_fit_through_origin() -> None:
    assert fit_through_origin([1, 2, 3], [2, 4, 6]) == pytest.approx(2.0)
    assert fit_through_origin([1, 1], [1, 3]) == pytest.approx(2.0)  # the mean, for equal x


@pytest.mark.e2e
def test_memory_is_flat_with_the_adjoint_and_grows_without(study_run: Path) -> None:
    rows = read_csv(study_run / "memory.csv")
    ode_net = [row for row in rows if row["network"] == ODE_NET]
    rk_net = [row for row in rows if row["network"] == RK_NET]
    resnet = {int(row["evaluations"]): row["saved_bytes"] for row in rows if row["network"] == RESNET}
    assert len({row["saved_bytes"] for row in ode_net}) == 1, "the adjoint saves the same whatever the NFE"
    assert [row["evaluations"] for row in rk_net] == [row["evaluations"] for row in ode_net]
    for loose, tight in zip(rk_net, rk_net[1:]):
        if tight["evaluations"] > loose["evaluations"]:
            assert tight["saved_bytes"] > loose["saved_bytes"]
    assert all(rk["saved_bytes"] > ode["saved_bytes"] for rk, ode in zip(rk_net, ode_net))
    assert resnet[4] - resnet[2] == 2 * (resnet[2] - resnet[1]) > 0, "a ResNet's memory is linear in its depth"


def study_config(data_root: Path, checkpoint: Path, extra: list[str] = ()):
    return compose("mnist_nfe_study", [*study_overrides(data_root, checkpoint), *extra])


def test_data_other_than_the_trained_models_is_named(trained_run: Path, tiny_data_root: Path, tmp_path: Path) -> None:
    """The study's settings are checked by node_experiments.validation (tests/test_validation.py); what needs the
    checkpoint is checked when the study reads it."""
    with pytest.raises(ConfigError, match="data=mnist"):
        run_study(study_config(tiny_data_root, trained_run, ["data=fashion_mnist"]), tmp_path)


def test_a_missing_or_unfit_checkpoint_is_explained(tiny_data_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="study.checkpoint=.*no checkpoint at"):
        run_study(study_config(tiny_data_root, tmp_path / "nowhere"), tmp_path)
    resnet_config = OmegaConf.to_container(compose("mnist_resnet", TINY_MODEL), resolve=True)
    resnet = instantiate(resnet_config["model"])
    save_checkpoint({"model": resnet.state_dict(), "config": resnet_config}, tmp_path / CHECKPOINT_DIR / LAST)
    with pytest.raises(ConfigError, match="ResNet with 0 ODE blocks"):
        run_study(study_config(tiny_data_root, tmp_path), tmp_path)
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="not a checkpoint written by node-run"):
        run_study(study_config(tiny_data_root, tmp_path / "other.pt"), tmp_path)
