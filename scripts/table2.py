#!/usr/bin/env python
"""Reproduce the paper's Table 2 (Chen et al. 2018, section 5.1): predictive RMSE on noisy spirals.

    nice -n 5 python scripts/table2.py                       # run the missing runs of the grid, then print the table
    python scripts/table2.py --collect                       # only collect the runs already there
    nice -n 5 python scripts/table2.py --jobs 2              # two runs at a time (one thread each)
    python scripts/table2.py --seeds 0 --n-obs 30 -- trainer.max_epochs=5    # a part of the grid, extra overrides

The grid is both experiments (``spiral_rnn``, ``spiral_latent_ode``) x ``data.n_obs`` in {30, 50, 100} x seeds
(``trainer.seed``, which also draws a new data set). Each cell is one ``node-run`` into
``<out>/<experiment>/n<N>_seed<S>``; a cell whose ``summary.json`` exists is not run again, unless its run was
interrupted (``status``), when it resumes from its checkpoint: an interrupted grid continues where it stopped. The
table counts completed runs only. The table (Markdown, mean +- std over the seeds, beside the paper's values) is printed
and written to ``<out>/table2.md``, with the noise level and the settings; ``<out>/figure8_n<N>.png`` sets both
models side by side on the first test spirals of seed ``--seeds[0]`` (the paper's Figure 8).

Gradients: every cell runs with the experiment's own ``solver.gradient`` (checkpointed for the latent ODE; its
config says why).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

EXPERIMENTS = {"spiral_rnn": "RNN", "spiral_latent_ode": "Latent ODE"}
# The paper's Table 2: predictive RMSE on the test set, by number of observed time points.
PAPER = {"spiral_rnn": {30: 0.3937, 50: 0.3202, 100: 0.1813}, "spiral_latent_ode": {30: 0.1642, 50: 0.1502, 100: 0.1346}}
METRIC = "test_rmse_extrapolation"
# The median over test spirals of each spiral's own extrapolation RMSE: how well a typical spiral is continued.
MEDIAN = "test_rmse_extrapolation_median"


def run_dir(out: Path, experiment: str, n_obs: int, seed: int) -> Path:
    return out / experiment / f"n{n_obs}_seed{seed}"


def run_cell(out: Path, experiment: str, n_obs: int, seed: int, overrides: list[str]) -> float:
    """One ``node-run`` of the grid; returns its wall time. Its output goes to ``<run>/node-run.out``."""
    folder = run_dir(out, experiment, n_obs, seed)
    folder.mkdir(parents=True, exist_ok=True)
    node_run = Path(sys.executable).parent / "node-run"
    resume = [f"trainer.resume={folder}"] if (folder / "checkpoints" / "last.pt").is_file() else []
    command = [
        str(node_run), f"experiment={experiment}", f"data.n_obs={n_obs}", f"trainer.seed={seed}",
        "trainer.progress_bar=false", *overrides, *resume, f"hydra.run.dir={folder}",
    ]
    start = time.perf_counter()
    with open(folder / "node-run.out", "w", encoding="utf-8") as log:
        result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "HYDRA_FULL_ERROR": "1"})
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        log_file = folder / "node-run.out"
        raise RuntimeError(f"table2: {' '.join(command)} failed (exit {result.returncode}); see {log_file}")
    return elapsed


def run_and_report(out: Path, experiment: str, n_obs: int, seed: int, overrides: list[str]) -> None:
    """Run one cell of the grid and print its result."""
    try:
        elapsed = run_cell(out, experiment, n_obs, seed, overrides)
    except RuntimeError as failure:  # the other cells go on; the table shows what finished
        print(failure, flush=True)
        return
    summary = json.loads((run_dir(out, experiment, n_obs, seed) / "summary.json").read_text(encoding="utf-8"))
    print(f"{experiment} n_obs={n_obs} seed={seed}: {METRIC} {summary[METRIC]:.4f} ({elapsed:.0f} s)", flush=True)


def needs_run(folder: Path) -> bool:
    """Whether a cell is still to run: it has no summary.json, or its run was interrupted (it then resumes)."""
    summary = folder / "summary.json"
    return not summary.exists() or json.loads(summary.read_text(encoding="utf-8")).get("status") == "interrupted"


def collect(out: Path, n_obs_values: list[int], seeds: list[int]) -> dict[tuple[str, int], list[dict]]:
    """The summaries of the grid's completed runs, by (experiment, n_obs)."""
    from node_experiments.training.run_logger import is_completed

    found: dict[tuple[str, int], list[dict]] = {}
    for experiment in EXPERIMENTS:
        for n_obs in n_obs_values:
            for seed in seeds:
                path = run_dir(out, experiment, n_obs, seed) / "summary.json"
                summary = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
                if summary and is_completed(summary):
                    found.setdefault((experiment, n_obs), []).append(summary)
    return found


def run_setting(out: Path, key: str) -> str:
    """A config value of one finished run, from Hydra's record of its composed config (e.g. ``data.noise``)."""
    import yaml  # Hydra's dependency

    for config in sorted(out.glob("*/*/.hydra/config.yaml")):
        value = yaml.safe_load(config.read_text(encoding="utf-8"))
        for part in key.split("."):
            value = value.get(part, {}) if isinstance(value, dict) else {}
        if value != {}:
            return str(value)
    return "?"


def mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {spread:.4f}"


def table(found: dict[tuple[str, int], list[dict]], n_obs_values: list[int], out: Path) -> str:
    """Table 2 as Markdown: per model, the paper's row and ours."""
    header = "| Model | " + " | ".join(f"n = {n}" for n in n_obs_values) + " |"
    lines = [header, "|---" * (len(n_obs_values) + 1) + "|"]
    for experiment, name in EXPERIMENTS.items():
        paper = [f"{PAPER[experiment][n]:.4f}" if n in PAPER[experiment] else "-" for n in n_obs_values]
        ours = [mean_std([s[METRIC] for s in found.get((experiment, n), [])]) for n in n_obs_values]
        counts = {len(found.get((experiment, n), [])) for n in n_obs_values}
        lines.append(f"| {name} (paper) | " + " | ".join(paper) + " |")
        lines.append(f"| {name} (here, {'/'.join(map(str, sorted(counts)))} seeds) | " + " | ".join(ours) + " |")
        medians = [[s[MEDIAN] for s in found.get((experiment, n), []) if MEDIAN in s] for n in n_obs_values]
        if any(medians):
            lines.append(f"| {name} (here, median spiral) | " + " | ".join(map(mean_std, medians)) + " |")
    runs = [summary for summaries in found.values() for summary in summaries]
    train_time = sum(summary.get("train_time_s", 0.0) for summary in runs)
    setting = partial(run_setting, out)
    try:
        train_spirals = int(setting("data.n_spirals")) - int(setting("data.test_size"))
        steps = int(setting("trainer.max_epochs")) * -(-train_spirals // int(setting("data.batch_size")))
    except ValueError:
        train_spirals, steps = "?", "?"
    gradients = f"solver.gradient={setting('solver.gradient')}"
    lines += [
        "",
        f"Predictive RMSE over the {setting('data.window')} extrapolation times of the {setting('data.test_size')} "
        f"test spirals, against the noise-free spirals; **observation noise std {setting('data.noise')}**, "
        f"`data.curve={setting('data.curve')}`; mean ± "
        f"std over seeds (each seed draws its own data set and initialisation). Training: "
        f"{setting('trainer.max_epochs')} epochs over {train_spirals} spirals in batches of "
        f"{setting('data.batch_size')} ({steps} Adam steps, lr {setting('optimizer.lr')} x "
        f"{setting('scheduler.gamma')} per epoch); latent ODE: dopri5 at rtol {setting('solver.rtol')}, atol "
        f"{setting('solver.atol')}, gradients by {gradients}. Rows 'median spiral': the median over test spirals of "
        "each spiral's own RMSE, mean ± std over seeds. "
        f"{len(runs)} runs, {train_time / 60:.1f} min of "
        "training in all.",
    ]
    return "\n".join(lines)


def figure8(out: Path, n_obs: int, seed: int) -> Path | None:
    """Both models' predictions on the first test spirals, side by side, from the runs' last checkpoints."""
    import torch

    from node_experiments.studies.trained_run import load_trained_run
    from node_experiments.tasks.sequence_figures import predictions_figure
    from node_experiments.training.checkpoint import CHECKPOINT_DIR, LAST

    predictions, batch = {}, None
    for experiment, name in EXPERIMENTS.items():
        folder = run_dir(out, experiment, n_obs, seed)
        if not (folder / CHECKPOINT_DIR / LAST).exists():
            return None
        run = load_trained_run(folder, torch.device("cpu"), key="run folder")
        task = run.task(torch.device("cpu"))
        _, test_loader = task.dataloaders(torch.Generator())
        batch = task.example_batch(test_loader, task.cfg.task.figure_spirals)
        with torch.no_grad():
            predictions[name] = task.predict(run.model, batch, test_loader)
    path = out / f"figure8_n{n_obs}.png"
    predictions_figure(batch, predictions).savefig(path, dpi=110, bbox_inches="tight")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/table2"), help="folder of the grid's runs")
    parser.add_argument("--n-obs", type=int, nargs="+", default=[30, 50, 100])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--collect", action="store_true", help="only collect the runs already there")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (each uses trainer.num_threads threads)")
    parser.add_argument("overrides", nargs="*", help="more node-run overrides for every run (after --)")
    args = parser.parse_args()
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs}: give a number of runs at a time, 1 or more")

    start = time.perf_counter()
    if not args.collect:
        cells = [(e, n, s) for n in args.n_obs for s in args.seeds for e in EXPERIMENTS]
        missing = [cell for cell in cells if needs_run(run_dir(args.out, *cell))]
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:  # each cell is its own node-run process
            cells_running = []
            for experiment, n_obs, seed in missing:
                cells_running.append(pool.submit(run_and_report, args.out, experiment, n_obs, seed, list(args.overrides)))
            for cell in cells_running:
                cell.result()  # re-raises anything unexpected from a cell

    found = collect(args.out, args.n_obs, args.seeds)
    text = table(found, args.n_obs, args.out)
    print(text)
    (args.out / "table2.md").parent.mkdir(parents=True, exist_ok=True)
    (args.out / "table2.md").write_text(text + "\n", encoding="utf-8")
    for n_obs in args.n_obs:
        path = figure8(args.out, n_obs, args.seeds[0])
        if path:
            print(f"Figure 8 (n_obs={n_obs}): {path}")
    print(f"table2: {time.perf_counter() - start:.0f} s wall time.")


if __name__ == "__main__":
    main()
