"""``node-report pages``: the results pages' generated blocks are what their commands print from the committed run
records. The first test is the one that holds docs/results/ to docs/results/runs/; the others use a tiny page and
tiny records written here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from node_experiments.reports.cli import main
from node_experiments.training.run_logger import write_json
from test_reports import classification_summary

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs" / "results").glob("*.md"))


def test_every_results_page_is_what_its_commands_print(capsys: pytest.CaptureFixture) -> None:
    """Each table of docs/results/*.md between node-report markers, regenerated from the records and compared."""
    assert PAGES, "docs/results/ has pages"
    status = main(["pages", "--check", "--root", str(ROOT), *map(str, PAGES)])
    printed = capsys.readouterr()
    assert status == 0, printed.err


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A root with the records of an ODE-Net run and a page whose block is stale."""
    run = tmp_path / "runs" / "odenet"
    run.mkdir(parents=True)
    write_json(run / "summary.json", classification_summary("mnist_odenet"))
    records = [{"epoch": epoch, "nfe/forward": 20.0 + epoch, "nfe/backward": 21.0 + epoch, "train/loss": 1.0 / epoch,
                "test/error": 0.05 / epoch} for epoch in (1, 2)]  # fmt: skip
    (run / "metrics.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    (tmp_path / "page.md").write_text(
        "# A page\n\n```markdown\n<!-- node-report records a b -->\n```\n\n<!-- node-report table1 runs -->\nstale\n"
        "<!-- end node-report -->\n\nBetween.\n\n<!-- node-report figure3d runs --figures figures -->\n"
        "<!-- end node-report -->\nThe end.\n"
    )
    return tmp_path


def printed_by(capsys: pytest.CaptureFixture, *argv: str) -> str:
    assert main(list(argv)) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def test_pages_rewrites_each_block_from_its_command(site: Path, capsys: pytest.CaptureFixture) -> None:
    page = site / "page.md"
    table1 = printed_by(capsys, "table1", str(site / "runs"))
    assert printed_by(capsys, "pages", str(page), "--root", str(site)) == f"{page}: 2 blocks, rewritten\n"
    assert (site / "figures" / "figure3d_nfe_training.png").is_file(), "rewriting draws the blocks' figures"
    text = page.read_text()
    assert text.startswith("# A page\n\n```markdown\n<!-- node-report records a b -->\n```\n\n"), "fenced: plain"
    assert f"<!-- node-report table1 runs -->\n\n{table1}\n<!-- end node-report -->\n\nBetween." in text
    assert "NFE per training batch: forward 21.0 at epoch 1, 22.0 at epoch 2 (1.05x); backward 22.0 at epoch 1" in text
    assert text.endswith("(1.05x).\n\n<!-- end node-report -->\nThe end.\n")
    assert printed_by(capsys, "pages", str(page), "--root", str(site)) == f"{page}: 2 blocks, up to date\n"

    (site / "figures" / "figure3d_nfe_training.png").unlink()
    write_json(site / "runs" / "odenet" / "summary.json", classification_summary("mnist_odenet", test_error=0.02))
    assert main(["pages", "--check", str(page), "--root", str(site)]) == 1
    (message,) = capsys.readouterr().err.splitlines()
    line = text.splitlines().index(next(row for row in text.splitlines() if row.startswith("| ODE-Net"))) + 1
    assert message.startswith(f"node-report pages: {page} line {line} differs from what `node-report table1 runs` "
                              "prints: the page has '| ODE-Net | mnist | 2 | - |  | 1.23% |")
    assert "the command prints '| ODE-Net | mnist | 2 | - |  | 2.00% |" in message
    assert page.read_text() == text and not (site / "figures" / "figure3d_nfe_training.png").exists(), (
        "--check writes neither the page nor the figures")


@pytest.mark.parametrize("body, problem", [
    ("<!-- node-report table1 runs -->\n", "line 1: the block of `node-report table1 runs` has no <!-- end"),
    ("text\n<!-- end node-report -->\n", "line 2: <!-- end node-report --> ends no block"),
    ("<!-- node-report table1 runs -->\n<!-- node-report table1 runs -->\n", "line 2: another block begins"),
    ("<!-- node-report records runs out -->\n<!-- end node-report -->\n", "line 1: `node-report records runs out` "
     "is not a report that prints a table"),
    ("<!-- node-report table1 nowhere -->\n<!-- end node-report -->\n", "line 1: `node-report table1 nowhere` "
     "failed: not a folder: nowhere."),
])  # fmt: skip
def test_a_page_that_cannot_be_rewritten_is_named_with_its_line(body: str, problem: str, site: Path,
                                                                capsys: pytest.CaptureFixture) -> None:
    page = site / "bad.md"
    page.write_text(body)
    assert main(["pages", str(page), "--root", str(site)]) in (1, 2)
    (message,) = capsys.readouterr().err.splitlines()
    assert message.startswith(f"node-report pages: {page} {problem}") and page.read_text() == body
