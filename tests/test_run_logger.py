"""What the run logger writes, read back as TensorBoard reads it."""

from __future__ import annotations

from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from node_experiments.training.run_logger import RunLogger


def test_hyperparameters_are_in_the_runs_own_event_files(tmp_path: Path) -> None:
    """The hparams summaries and the scalars are one TensorBoard run (the ``tb`` folder, no sub-run), and the
    metrics are not logged a second time."""
    logger = RunLogger(tmp_path, tensorboard=True)
    for step, accuracy in ((1, 0.5), (2, 0.75)):
        logger.scalars({"test/accuracy": accuracy}, step)
    logger.hyperparameters({"solver": {"rtol": 1e-3, "method": "dopri5"}, "trainer": {"seed": 3}},
                           {"test/accuracy": 0.75})
    logger.close()
    assert [path.name for path in (tmp_path / "tb").iterdir() if path.is_dir()] == []

    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert [(event.step, event.value) for event in events.Scalars("test/accuracy")] == [(1, 0.5), (2, 0.75)]
    content = events.PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert {info.name for info in experiment.hparam_infos} == {"solver.rtol", "solver.method", "trainer.seed"}
    assert [info.name.tag for info in experiment.metric_infos] == ["test/accuracy"]
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["solver.rtol"].number_value == 1e-3
    assert start.hparams["solver.method"].string_value == "dopri5"
    assert start.hparams["trainer.seed"].number_value == 3
