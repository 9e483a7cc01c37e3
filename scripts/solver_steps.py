"""Solver steps per solve of trained models: the measurements behind each experiment's ``max_num_steps``.

A solve whose dynamics diverge or stiffen can take steps without end; ``solver.options.max_num_steps`` stops it
(forward, and the adjoint's backward solve, which inherits it unless ``solver.adjoint_options.max_num_steps`` sets
its own). Each experiment sets them
with a wide margin over what its trained model takes, so that a runaway fails in seconds and a healthy run never
meets the bound. This script measures, for each trained run given, the steps (accepted + rejected) of the forward
and backward solves over training batches, the time a step takes here, and so how long the budget the experiment
sets now (its config file; the run's own for an unknown experiment) lasts::

    python scripts/solver_steps.py outputs/cnf_two_moons/DATE/TIME outputs/spiral_latent_ode/DATE/TIME ...
    python scripts/solver_steps.py RUN --batches 20 --rtol 1e-5    # at another tolerance than the run's

It prints a Markdown table: one row per run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from node_experiments.models import ODEBlock
from node_experiments.ode import record_stats
from node_experiments.ode.options import DEFAULT_MAX_NUM_STEPS
from node_experiments.studies.trained_run import load_trained_run, solver_settings
from node_experiments.training.run_logger import SUMMARY_FILE
from node_experiments.tasks import to_device

COLUMNS = ("Run", "Experiment", "Batches", "Fwd steps (median / max)", "Bwd steps (median / max)",
           "Budget fwd / bwd", "Margin", "s per step", "Budget lasts")  # fmt: skip


def measure(run: Path, batches: int, overrides: dict[str, float]) -> dict[str, object]:
    """Steps per forward and backward solve over ``batches`` training batches of ``run``'s trained model."""
    trained = load_trained_run(run, torch.device("cpu"), key="run")
    model = trained.model.train()
    task = trained.task(torch.device("cpu"))
    train_loader, _ = task.dataloaders(torch.Generator().manual_seed(0))
    blocks = [module for module in model.modules() if isinstance(module, ODEBlock)]
    forward, backward, seconds_per_step = [], [], []
    for index, batch in enumerate(train_loader):
        if index == batches:
            break
        start = time.perf_counter()
        with record_stats() as stats, contextlib.ExitStack() as settings:
            for block in blocks:
                settings.enter_context(solver_settings(block, **overrides))
            loss, _ = task.training_step(model, to_device(batch, task.device))
            model.zero_grad(set_to_none=True)
            loss.backward()
        forward_steps = stats.accepted_steps + stats.rejected_steps
        backward_steps = stats.backward_accepted_steps + stats.backward_rejected_steps
        seconds_per_step.append((time.perf_counter() - start) / max(forward_steps + backward_steps, 1))
        forward.append(forward_steps / max(stats.solves, 1))  # per solve: what max_num_steps bounds
        backward.append(backward_steps / max(stats.backward_solves, 1))
    experiment = _experiment(trained.checkpoint)
    solver = _configured_solver(experiment) or trained.config["model"].get("solver", {})
    per_step = statistics.median(seconds_per_step)  # the batch's whole time (loss, backward) over its steps
    forward_budget = (solver.get("options") or {}).get("max_num_steps")
    # The backward solve inherits the forward options; a key set under adjoint_options replaces the inherited one.
    budget = (forward_budget, (solver.get("adjoint_options") or {}).get("max_num_steps") or forward_budget)
    return {
        "run": run, "experiment": experiment,
        "batches": len(forward), "forward": forward, "backward": backward, "budget": budget, "per_step": per_step,
    }  # fmt: skip


def _experiment(checkpoint: Path) -> str:
    """The experiment's name, from the summary.json beside the checkpoint's run folder ("?" without one)."""
    summary = checkpoint.parent.parent / SUMMARY_FILE
    return json.loads(summary.read_text(encoding="utf-8")).get("experiment", "?") if summary.is_file() else "?"


def _configured_solver(experiment: str) -> dict:
    """The experiment's ``solver`` settings as its config file sets them now (empty for an unknown experiment)."""
    from hydra import compose, initialize_config_module

    from node_experiments.cli import available_experiments

    if experiment not in available_experiments():
        return {}
    with initialize_config_module("node_experiments.configs", version_base="1.3"):
        return OmegaConf.to_container(compose("config", overrides=[f"experiment={experiment}"]).solver)


def row(result: dict[str, object]) -> list[str]:
    forward, backward = result["forward"], result["backward"]
    budgets = [budget or DEFAULT_MAX_NUM_STEPS for budget in result["budget"]]
    margins = [budget / max(most, 1) for budget, most in zip(budgets, (max(forward), max(backward))) if most]
    return [
        str(result["run"]), str(result["experiment"]), str(result["batches"]),
        f"{statistics.median(forward):.0f} / {max(forward):.0f}",
        f"{statistics.median(backward):.0f} / {max(backward):.0f}" if max(backward) else "-",
        " / ".join(f"{budget:,}" for budget in budgets), f"{min(margins):.0f}x",
        f"{result['per_step'] * 1e3:.1f} ms", f"{budgets[0] * result['per_step']:.0f} s",
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="trained run folders (or checkpoint files)")
    parser.add_argument("--batches", type=int, default=10, help="training batches measured per run")
    parser.add_argument("--rtol", type=float, help="measure at this rtol instead of the run's")
    parser.add_argument("--atol", type=float, help="measure at this atol instead of the run's")
    args = parser.parse_args()
    torch.set_num_threads(1)
    overrides = {name: value for name, value in (("rtol", args.rtol), ("atol", args.atol)) if value is not None}
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for run in args.runs:
        print("| " + " | ".join(row(measure(run, args.batches, overrides))) + " |", flush=True)


if __name__ == "__main__":
    main()
