"""Shared test fixtures: a tiny MNIST written in torchvision's raw format, and helpers to run experiments.

Other test modules (and other kinds of experiment) reuse these:

- ``tiny_data_root``: a folder holding MNIST and FashionMNIST with 64 training and 32 test images each, in
  torchvision's layout (``<root>/<Dataset>/raw/*-ubyte``), so no test needs the real data or a network.
- ``tiny_overrides(data_root, run_dir)``: the command-line overrides that make any MNIST experiment run in
  seconds on that data (4 batches of 16, one epoch, no progress bar, the given run folder). For a smoke run of any
  experiment, ``debug=quick`` does the same from the configs (2 batches, and tiny sizes for every task).
- ``run_node_run(args, env)``: run the installed ``node-run`` console script in a subprocess (tests that do are
  marked ``e2e``).
- ``sweep_jobs(output_dir)``: the job folders of the one sweep written under ``<output_dir>/multirun``.
- ``compose(experiment, overrides)``: the composed config of an experiment, through Hydra's compose API;
  ``mnist_data_config(data_root, *overrides)``: the MNIST ``data`` group on the tiny data.

Every test runs torch on one thread (``single_thread``, autouse), and so does every ``node-run`` started by
``run_node_run``: the tensors of the tests are tiny, and on a CPU shared with other processes a second OpenMP
thread made steps several times slower, not faster.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose as hydra_compose
from hydra import initialize_config_module
from omegaconf import DictConfig

TRAIN_IMAGES, TEST_IMAGES = 64, 32
IDX_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def write_tiny_mnist(root: Path, dataset: str = "MNIST", train: int = TRAIN_IMAGES, test: int = TEST_IMAGES) -> Path:
    """Write ``train``/``test`` random 28x28 images with labels 0-9 as ``root/<dataset>/raw`` IDX files.

    Each image has a bright square whose position depends on its label, so the classes are learnable.
    """
    raw = root / dataset / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for is_train, count in ((True, train), (False, test)):
        labels = (np.arange(count) % 10).astype(np.uint8)
        images = rng.integers(0, 64, size=(count, 28, 28), dtype=np.uint8)
        for image, label in zip(images, labels):
            row, col = 4 + 6 * (label // 4), 4 + 6 * (label % 4)
            image[row : row + 6, col : col + 6] = 255
        image_file, label_file = IDX_FILES[is_train]
        (raw / image_file).write_bytes(struct.pack(">iiii", 0x803, count, 28, 28) + images.tobytes())
        (raw / label_file).write_bytes(struct.pack(">ii", 0x801, count) + labels.tobytes())
    return root


@pytest.fixture(scope="session", autouse=True)
def single_thread():
    """Run the tests' torch work on one thread, then restore the setting."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root with tiny MNIST and FashionMNIST copies (use as ``data.root``)."""
    root = tmp_path_factory.mktemp("data")
    write_tiny_mnist(root, "MNIST")
    write_tiny_mnist(root, "FashionMNIST")
    return root


def tiny_overrides(data_root: Path, run_dir: Path) -> list[str]:
    """Overrides that run an MNIST experiment on the tiny data in seconds, writing into ``run_dir``."""
    return [
        f"data.root={data_root}",
        "data.download=false",
        "data.batch_size=16",
        "data.test_batch_size=32",
        "trainer.max_epochs=1",
        "trainer.progress_bar=false",
        "logger.log_every_n_steps=2",
        f"hydra.run.dir={run_dir}",
    ]


def node_run_executable() -> str:
    """The ``node-run`` script installed beside the Python running the tests."""
    script = Path(sys.executable).parent / "node-run"
    if not script.exists():
        pytest.fail(f"{script} not found: install the project first (pip install -e '.[dev]', or make test).")
    return str(script)


def run_node_run(
    args: list[str], cwd: Path | None = None, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run ``node-run ARGS`` in a subprocess (with ``env`` added to the environment) and return it finished."""
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        [node_run_executable(), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def sweep_jobs(output_dir: Path) -> dict[str, Path]:
    """The job folders (``<n>_<experiment>``, by name) of the one sweep that node-run wrote under ``output_dir``
    (its ``paths.output_dir``: ``<output_dir>/multirun/<date>/<time>/``)."""
    (sweep,) = [path.parent for path in output_dir.glob("multirun/*/*/multirun.yaml")]
    return {path.name: path for path in sorted(sweep.iterdir()) if path.is_dir()}


def compose(experiment: str, overrides: list[str] = ()) -> DictConfig:
    """The config of ``node-run experiment=<experiment> <overrides>``, without the ``hydra`` node."""
    with initialize_config_module("node_experiments.configs", version_base="1.3"):
        return hydra_compose("config", overrides=[f"experiment={experiment}", *overrides])


def mnist_data_config(data_root: Path, *overrides: str) -> DictConfig:
    """The ``data`` group of the MNIST experiments, reading the tiny data at ``data_root``."""
    return compose("mnist_mlp", [f"data.root={data_root}", "data.download=false", *overrides]).data
