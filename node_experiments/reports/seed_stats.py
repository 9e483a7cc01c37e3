"""The statistics of one measurement over seeds, as the tables print them: mean ± std, median, and every seed.

A seed's outcome can be luck (docs/results/table2.md: two latent ODE seeds with the same final ELBO extrapolate 5x
apart), so a table that gives the mean alone averages away what matters. These cells put the mean ± sample
standard deviation beside the median (which one bad seed does not move) and the per-seed values (``seed: value``).
"""

from __future__ import annotations

import statistics

DIGITS = 3


def number(value: float) -> str:
    return f"{value:.{DIGITS}f}"


def mean_std(values: list[float], seeds: int | None = None) -> str:
    """``mean ± std`` (the std from 2 values on); ``(k runs)`` when there are fewer values than ``seeds``."""
    if not values:
        return "-"
    spread = f" ± {number(statistics.stdev(values))}" if len(values) > 1 else ""
    count = f" ({len(values)} runs)" if seeds is not None and len(values) != seeds else ""
    return f"{number(statistics.mean(values))}{spread}{count}"


def seed_cells(by_seed: dict[int, float], seeds: int | None = None) -> list[str]:
    """[mean ± std, median, per seed] of one measurement, by seed."""
    values = [by_seed[seed] for seed in sorted(by_seed)]
    if not values:
        return ["-", "-", "-"]
    per_seed = ", ".join(f"{seed}: {number(by_seed[seed])}" for seed in sorted(by_seed))
    return [mean_std(values, seeds), number(statistics.median(values)), per_seed]
