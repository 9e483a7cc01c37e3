"""The names of Hydra and OmegaConf that ``node_experiments.hydra_adapter`` uses outside their public API: the
installed Hydra is the version pyproject.toml pins, and each name exists and behaves as the adapter assumes. A
Hydra upgrade fails here, with the name that changed, rather than in ``node-run`` at run time."""

from __future__ import annotations

import re
from pathlib import Path

import hydra
import pytest
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from node_experiments.hydra_adapter import command_line_args, config_node, dotted_keys, override_parser, raw_value

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def pinned_hydra() -> str:
    """The version of hydra-core that pyproject.toml pins with ``==``."""
    match = re.search(r'"hydra-core==([^"\s;]+)"', PYPROJECT.read_text(encoding="utf-8"))
    assert match, (
        "pyproject.toml does not pin hydra-core with ==: node_experiments/hydra_adapter.py uses Hydra's private "
        "names, so the project must name the one Hydra version they are checked against."
    )
    return match.group(1)


def test_the_installed_hydra_is_the_pinned_one() -> None:
    pinned = pinned_hydra()
    assert hydra.__version__ == pinned, (
        f"Hydra {hydra.__version__} is installed but pyproject.toml pins hydra-core=={pinned}. "
        "node_experiments/hydra_adapter.py reads Hydra's private parser and override grammar: run this file's other "
        "tests against the new version, fix the adapter where they fail, then change the pin."
    )


def test_hydra_parses_the_command_line_as_the_adapter_reads_it() -> None:
    """``hydra._internal.utils.get_args_parser``: the flags node-run checks, and the overrides, as attributes."""
    args = command_line_args(["-m", "--cfg", "job", "experiment=a,b", "x.y=1"])
    assert args is not None, "hydra._internal.utils.get_args_parser() refused a command line @hydra.main takes"
    assert args.overrides == ["experiment=a,b", "x.y=1"]
    assert (args.multirun, args.cfg, args.run, args.info, args.shell_completion) == (True, "job", False, None, False)
    plain = command_line_args(["experiment=a"])
    assert (plain.multirun, plain.cfg, plain.info) == (False, None, None)
    assert command_line_args(["--cfg", "everything"]) is None  # argparse's SystemExit: Hydra prints the usage


def test_hydra_parses_overrides_as_the_adapter_reads_them() -> None:
    """``OverridesParser``: the attributes and methods ``command_line.py`` reads of a parsed override."""
    parser = override_parser()
    sweep = parser.parse_override("data=a,b")
    assert sweep.is_sweep_override() and sweep.key_or_group == "data" and sweep.input_line == "data=a,b"
    assert sweep.get_key_element() == "data" and list(sweep.sweep_string_iterator()) == ["a", "b"]
    value = parser.parse_override("trainer.max_epochs=3")
    assert not value.is_sweep_override() and value.value() == 3 and value.package is None
    assert not (value.is_add() or value.is_force_add() or value.is_delete() or value.is_hydra_override())
    assert parser.parse_override("+a=1").is_add() and parser.parse_override("++a=1").is_force_add()
    assert parser.parse_override("~a").is_delete() and parser.parse_override("hydra.mode=MULTIRUN").is_hydra_override()
    assert parser.parse_override("model@m=x").package == "m"
    assert [o.key_or_group for o in parser.parse_overrides(["a=1", "b=2"])] == ["a", "b"]
    with pytest.raises(HydraException):
        parser.parse_override("trainer.max_epochs")


def test_config_nodes_are_read_as_written() -> None:
    """OmegaConf's ``_get_node``, ``_value`` and ``_is_interpolation``: nodes found by dotted key, values unresolved,
    interpolations not descended into."""
    cfg = OmegaConf.create({"a": {"b": 1, "c": "${missing.key}"}, "d": "${a}", "e": None})
    assert raw_value(config_node(cfg, "a.b")) == 1
    assert raw_value(config_node(cfg, "a.c")) == "${missing.key}"  # unresolved: it would fail to resolve
    assert config_node(cfg, "") is cfg and isinstance(config_node(cfg, "a"), DictConfig)
    assert config_node(cfg, "a.x") is None and config_node(cfg, "a.b.c") is None and config_node(cfg, "d.b") is None
    assert raw_value(config_node(cfg, "d")) == "${a}" and raw_value(config_node(cfg, "e")) is None
    assert list(dotted_keys(cfg)) == ["a", "a.b", "a.c", "d", "e"]
