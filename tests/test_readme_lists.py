"""README's lists of choices are the code's: the config groups' options, the solver's methods and gradient
strategies, the spiral curves and the experiments. Each list is read from README and compared with what the code
or the config folders hold, so that neither can change without the other."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from node_experiments.data.spirals import CURVES
from node_experiments.ode import ADAPTIVE_METHODS, FIXED_STEP_METHODS, GRADIENTS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
CONFIGS = ROOT / "node_experiments" / "configs"
HYDRA_LAUNCHERS = {"basic", "joblib"}  # Hydra's own and the joblib plugin's; slurm is the project's config
NUMBERS = {"four": 4, "five": 5, "six": 6, "seven": 7}


def group_rows() -> dict[str, set[str]]:
    """Each group of README's "Config groups" table and the options its rows name (``| `data` (`a`, `b`) |``)."""
    table = README.split("## Config groups", 1)[1].split("\n\n## ", 1)[0]
    groups: dict[str, set[str]] = {}
    for line in table.splitlines():
        match = re.match(r"\| `([\w/]+)` \(([^|]*)\) \|", line)
        if match:
            groups.setdefault(match[1], set()).update(re.findall(r"`(\w+)`", match[2]))
    return groups


def row(group: str) -> str:
    """The text of the keys column of the (first) row of ``group``."""
    return next(line for line in README.splitlines() if line.startswith(f"| `{group}` ")).split(" | ", 1)[1]


def test_every_config_group_row_names_exactly_the_groups_options() -> None:
    groups = group_rows()
    assert {"task", "data", "model", "solver", "scheduler", "preset", "hydra/launcher"} <= set(groups)
    for group, named in groups.items():
        folder = CONFIGS / group
        options = {path.stem for path in folder.glob("*.yaml")}
        if group == "hydra/launcher":
            options |= HYDRA_LAUNCHERS
        assert named == options, f"README's `{group}` rows name {sorted(named)}; configs/{group} has {sorted(options)}"


def test_the_solver_row_lists_every_method_and_gradient_strategy() -> None:
    keys = row("solver")
    methods = re.search(r"`method` \(([^)]*)\)", keys)[1].split(", ")
    assert methods == [*ADAPTIVE_METHODS, *FIXED_STEP_METHODS]
    gradients = re.findall(r"`(\w+)`", re.search(r"`gradient` \(([^)]*)\)", keys)[1])
    assert gradients == list(GRADIENTS)


def test_the_solver_paragraph_counts_the_methods() -> None:
    match = re.search(r"(\w+) adaptive methods and\s+(\w+) fixed-step ones", README)
    assert match, "README's solver paragraph counts the adaptive and fixed-step methods"
    assert (NUMBERS[match[1]], NUMBERS[match[2]]) == (len(ADAPTIVE_METHODS), len(FIXED_STEP_METHODS))


def test_the_spiral_curves_are_the_generators() -> None:
    curves = re.findall(r"`(\w+)`", re.search(r"`curve` \(([^)]*)\)", README)[1])
    assert tuple(curves) == CURVES


@pytest.mark.parametrize("experiment", sorted(path.stem for path in (CONFIGS / "experiment").glob("*.yaml")))
def test_readme_names_every_experiment(experiment: str) -> None:
    assert f"`{experiment}`" in README or f"experiment={experiment}" in README, (
        f"experiment {experiment} (configs/experiment/{experiment}.yaml) is not named in README")
