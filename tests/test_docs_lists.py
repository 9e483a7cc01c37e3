"""The docs' lists of choices beyond README's (``test_readme_lists.py``) checked against the code: the config
groups table of docs/configuration.md, the method table and gradient strategies of docs/solver.md, README's
``data.test_range`` values and its experiments table. Each list is parsed from the page and compared with Hydra's
config groups (the package's configs and the installed launcher plugins) or the code's registries."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hydra import initialize_config_module
from hydra.core.global_hydra import GlobalHydra

from node_experiments.data.spirals import TEST_RANGES
from node_experiments.ode import ADAPTIVE_METHODS, FIXED_STEP_METHODS, GRADIENTS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
SOLVER = (ROOT / "docs" / "solver.md").read_text(encoding="utf-8")
# The launchers a reader picks: Hydra's own and the joblib plugin's, and the project's slurm (submitit's own
# launchers, installed with it, are reached through slurm).
LAUNCHERS = {"basic", "joblib", "slurm"}


@pytest.fixture(scope="module")
def group_options():
    """``group -> its options`` as Hydra lists them."""
    with initialize_config_module("node_experiments.configs", version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        yield loader.get_group_options


def ticked(text: str) -> list[str]:
    """The names written in backticks in ``text``, in order."""
    return re.findall(r"`([^`]+)`", text)


def table_rows(page: str, heading: str | None = None) -> list[list[str]]:
    """The cells of the markdown table rows of a page (of its ``## heading`` section when given), separators out."""
    if heading:
        page = page.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip().strip("|").split("|") for line in page.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row] for row in rows if not set("".join(row)) <= set("-: ")]


def test_configuration_md_names_every_group_with_exactly_its_options(group_options) -> None:
    seen = set()
    for first, listed, _ in table_rows(CONFIGURATION, "Config groups")[1:]:
        groups = ticked(first)
        if groups == ["experiment"]:
            assert re.fullmatch(r"the (\d+) experiments .*", listed)[1] == str(len(group_options("experiment")))
            continue
        for group, options in zip(groups, listed.split(";"), strict=True):
            expected = LAUNCHERS if group == "hydra/launcher" else set(group_options(group))
            assert set(ticked(options)) == expected, f"docs/configuration.md's `{group}` row"
            seen.add(group)
    folders = {path.name for path in (ROOT / "node_experiments" / "configs").iterdir() if path.is_dir()}
    assert folders - {"experiment", "hydra", "__pycache__"} | {"hydra/launcher"} <= seen
    assert LAUNCHERS <= set(group_options("hydra/launcher"))


def test_solver_md_method_table_and_gradients_are_the_registries() -> None:
    kinds: dict[str, list[str]] = {"adaptive": [], "fixed step": []}
    for first, kind, *_ in table_rows(SOLVER):
        if kind.split(",")[0] in kinds:
            kinds[kind.split(",")[0]] += ticked(first)
    assert kinds == {"adaptive": list(ADAPTIVE_METHODS), "fixed step": list(FIXED_STEP_METHODS)}
    assert ticked(re.search(r"gradient strategy's name \(([^)]*)\)", SOLVER)[1]) == list(GRADIENTS)


def test_readme_test_ranges_and_experiments_table_are_the_code(group_options) -> None:
    assert tuple(ticked(re.search(r"`test_range` \(([^)]*)\)", README)[1])) == TEST_RANGES
    listed = [name for first, *_ in table_rows(README, "Experiments")[1:] for name in ticked(first)]
    assert sorted(listed) == group_options("experiment"), "README's experiments table"
