"""The parts of Hydra and OmegaConf that ``node-run`` uses outside their public API, in one place.

``command_line.py`` checks a command line before Hydra runs it, so it must read that command line, and the
configs it composes, exactly as Hydra does. Hydra offers no public API for three of the things that takes:

- ``command_line_args``: Hydra's own argument parser, ``hydra._internal.utils.get_args_parser`` (a private
  module): the flags ``@hydra.main`` reads (``-m``, ``--cfg``, ``--info``, ...) and the overrides, parsed as it
  parses them;
- ``override_parser``: Hydra's override grammar, ``OverridesParser`` (``hydra.core.override_parser``, the
  parser its sweepers use, documented for plugins only): ``key=value``, sweeps ``a,b``, ``+``/``++``/``~``;
- ``config_node``, ``raw_value``, ``dotted_keys``: a composed config's nodes read as written, interpolations
  unresolved, through OmegaConf's node methods ``_get_node``, ``_value`` and ``_is_interpolation`` (underscored:
  ``OmegaConf.select`` would resolve, and fail on, the interpolations of a config not yet run).

Nothing else in the package imports these names. ``tests/test_hydra_adapter.py`` checks that the installed Hydra
is the version pinned in ``pyproject.toml`` and that each name exists and behaves as this module assumes, so that a
Hydra upgrade fails that one test, with the name that changed, instead of ``node-run`` at run time.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
from typing import Any


def command_line_args(argv: Sequence[str]) -> argparse.Namespace | None:
    """``argv`` parsed by Hydra's own argument parser (attributes ``overrides``, ``run``, ``multirun``, ``cfg``,
    ``info``, ``shell_completion``, ...); None when the parser refuses it (Hydra prints its usage itself)."""
    from hydra._internal.utils import get_args_parser

    try:
        args, _ = get_args_parser().parse_known_args(list(argv))
    except SystemExit:
        return None
    return args


def override_parser() -> Any:
    """Hydra's parser of overrides: ``.parse_override(text)`` for one, ``.parse_overrides(texts)`` for a list; a
    ``HydraException`` for text its grammar rejects."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create()


def config_node(cfg, dotted: str):
    """The config node at the dotted key (the root for ""), as written; None when there is no such key or the path
    runs through an interpolation."""
    from omegaconf import DictConfig

    node = cfg
    for part in filter(None, dotted.split(".")):
        if not isinstance(node, DictConfig) or node._is_interpolation() or part not in node:
            return None
        node = node._get_node(part)
    return node


def raw_value(node) -> Any:
    """A leaf node's value as written: an interpolation stays its ``${...}`` text."""
    return node._value()


def dotted_keys(cfg, prefix: str = "") -> Iterator[str]:
    """Every key of the config, as dotted paths (not descending into interpolations)."""
    from omegaconf import DictConfig

    for key in cfg.keys():
        path = f"{prefix}{key}"
        yield path
        child = cfg._get_node(key)
        if isinstance(child, DictConfig) and not child._is_interpolation():
            yield from dotted_keys(child, path + ".")
