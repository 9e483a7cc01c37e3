"""The paper's tables and figures rebuilt from finished runs, beside the paper's numbers: ``node-report``.

One module per report (``table1``, ``table2``, ``figure3``, ``flows``, ``beyond``), each with
``add_arguments(parser)`` and ``build(args) -> Report``; ``every`` runs all of them on one ``outputs/`` folder
(``node-report all``); ``runs`` finds the finished runs they read; ``cli`` is the ``node-report`` command (also
``python -m node_experiments.reports``), which prints a report's Markdown and writes it to ``--output``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Report:
    """What a report made: its Markdown text and the figure files it wrote."""

    text: str
    files: list[Path] = field(default_factory=list)

    def write(self, path: Path) -> None:
        """Write the Markdown to ``path`` (its folder made if missing)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.text, encoding="utf-8")
