"""How close healthy runs come to ``trainer.divergence_factor``: the measurement behind its default.

The trainer stops a run as diverged when a training step's loss, or an epoch's test loss, is above the factor
times the run's loss scale S = max(|first training loss|, |best epoch mean so far|) (``training.divergence``). For
each finished run given, this script replays that rule over the run's record: every training step's loss from its
TensorBoard events (run with ``logger.log_every_n_steps=1`` for every step; otherwise each logged value is the mean
of an interval), the epochs' means and test losses from ``metrics.jsonl``, with S as the trainer had it at that
moment. The largest ratios are the factor a healthy run needs; the default must sit far above them::

    node-run experiment=nf_two_moons trainer.divergence_factor=null logger.log_every_n_steps=1 hydra.run.dir=RUN
    python scripts/loss_scale.py RUN [RUN ...]

It prints a Markdown table: one row per run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from node_experiments.training.divergence import LossScale
from node_experiments.training.run_logger import METRICS_FILE


def largest_ratios(run: Path) -> dict[str, float]:
    """The run's first loss and its largest step loss / S and test loss / S."""
    events = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    steps = [(event.step, event.value) for event in events.Scalars("train/loss")]
    history = [json.loads(line) for line in (run / METRICS_FILE).read_text(encoding="utf-8").splitlines()]
    scale = LossScale(factor=1.0, first=steps[0][1])
    worst_step = worst_test = float("-inf")
    epoch = 0
    for step, loss in steps:
        while epoch < len(history) and step > history[epoch]["step"]:  # the epoch's end: its test loss, its mean
            worst_test = max(worst_test, (history[epoch].get("test/loss") or float("-inf")) / scale.limit())
            scale.epoch_done(history[epoch]["train/loss"])
            epoch += 1
        worst_step = max(worst_step, loss / scale.limit())
    for record in history[epoch:]:
        worst_test = max(worst_test, (record.get("test/loss") or float("-inf")) / scale.limit())
        scale.epoch_done(record["train/loss"])
    return {"epochs": len(history), "steps": len(steps), "first": steps[0][1], "step": worst_step, "test": worst_test}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (with tb/ and metrics.jsonl)")
    args = parser.parse_args()
    print("| Run | Epochs | Steps | First loss | Largest step loss / S | Largest test loss / S |")
    print("|---|---|---|---|---|---|")
    for run in args.runs:
        found = largest_ratios(run)
        print(f"| {run.name} | {found['epochs']} | {found['steps']} | {found['first']:.4g} | {found['step']:.3g} | "
              f"{found['test']:.3g} |")


if __name__ == "__main__":
    main()
