"""Hydra configs of node-run, packaged so that an installed ``node-run`` finds them from any folder.

Loaded with ``config_path="pkg://node_experiments.configs"``. Groups: ``experiment/`` (required; one file per
experiment, each starting with ``# @package _global_``), ``task/``, ``model/``, ``data/``, ``solver/``,
``optimizer/``, ``scheduler/``, ``trainer/``, ``logger/`` and ``hydra/launcher/``.
"""
