#!/usr/bin/env python
"""Where a spiral run's extrapolation error comes from (Table 2's RMSE, taken apart).

    python scripts/spiral_errors.py outputs/table2/default/*_spiral_latent_ode [more run folders]

For each trained run (``node-run experiment=spiral_latent_ode|spiral_rnn``), on its test spirals: the RMSE of Table 2
(against the noise-free spirals, per coordinate) and the median spiral's own RMSE; the share of the squared error that the worst 10% of the spirals carry; the
RMSE by quarter of the extrapolation window (errors grow as a prediction runs on); the RMSE by direction; and the
RMSE of the spirals whose extrapolation goes beyond the largest radius (around the spiral's own centre) of any
training observation window on the same curve, against the others: parts of the plane where no training spiral
of that direction was observed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from node_experiments.data.spirals import spiral_centres
from node_experiments.studies.trained_run import load_trained_run


def rmse(errors: torch.Tensor) -> float:
    """Root of the mean of the squared errors (over spirals, times and both coordinates)."""
    return float(errors.pow(2).mean().sqrt()) if errors.numel() else float("nan")


def breakdown(folder: Path) -> list[str]:
    run = load_trained_run(folder, torch.device("cpu"), key="run folder")
    task = run.task(torch.device("cpu"))
    train_loader, test_loader = task.dataloaders(torch.Generator())
    train, test = train_loader.dataset.spirals, test_loader.dataset.spirals
    curve, window = run.config["data"]["curve"], test.window
    with torch.no_grad():
        _, values = task.predict(run.model, test_loader.dataset[: len(test)], test_loader)
    errors = values[:, window:] - test.truth[:, window:]  # (N, W, 2), against the noise-free spirals
    per_spiral = errors.pow(2).mean(dim=(1, 2)).sqrt()
    worst = per_spiral.sort(descending=True).values
    tenth = max(1, len(worst) // 10)
    observed = (train.truth[:, :window] - spiral_centres(train.clockwise, curve)[:, None]).norm(dim=-1).amax(dim=1)
    seen = torch.stack([observed[~train.clockwise].max(), observed[train.clockwise].max()])  # per direction
    reach = (test.truth[:, window:] - spiral_centres(test.clockwise, curve)[:, None]).norm(dim=-1).amax(dim=1)
    beyond = reach > seen[test.clockwise.long()]
    quarters = errors.chunk(4, dim=1)
    return [
        f"{folder}: RMSE {rmse(errors):.3f}, median spiral {float(per_spiral.median()):.3f}; the worst 10% of the "
        f"spirals carry {float(worst[:tenth].pow(2).sum() / worst.pow(2).sum()):.0%} of the squared error",
        "  by quarter of the extrapolation window: " + ", ".join(f"{rmse(part):.3f}" for part in quarters),
        f"  counter-clockwise {rmse(errors[~test.clockwise]):.3f}, clockwise {rmse(errors[test.clockwise]):.3f}",
        f"  {int(beyond.sum())} spirals reach beyond the largest radius observed in training on their curve "
        f"({float(seen[0]):.2f} counter-clockwise, {float(seen[1]):.2f} clockwise): "
        f"RMSE {rmse(errors[beyond]):.3f}; the other {int((~beyond).sum())}: {rmse(errors[~beyond]):.3f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+", help="run folders of spiral_latent_ode or spiral_rnn")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for folder in args.runs:
        print("\n".join(breakdown(folder)))


if __name__ == "__main__":
    main()
