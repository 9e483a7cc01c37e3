"""docs/guarantees.md names, for each promise, the tests that check it: every test it names must exist, so that a
renamed or removed test cannot leave a promise pointing at nothing."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "guarantees.md"
# `tests/test_x.py`, `tests/test_x.py::test_name`, or `::test_name` (a test of the file named last before it)
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)?(?:::(\w+))?`")


def named_tests(text: str) -> tuple[set[str], set[tuple[str, str]]]:
    """The test files and the (file, test) pairs the page names, in its reading order."""
    files: set[str] = set()
    tests: set[tuple[str, str]] = set()
    current = None
    for match in REFERENCE.finditer(text):
        file, test = match.groups()
        if file:
            current = file
            files.add(file)
        if test:
            assert current, f"`::{test}` in {PAGE.name} comes before any test file is named"
            tests.add((current, test))
    return files, tests


def test_every_test_the_guarantees_page_names_exists() -> None:
    files, tests = named_tests(PAGE.read_text(encoding="utf-8"))
    assert len(tests) > 30, "the page names the tests of its promises"
    missing_files = sorted(file for file in files if not (ROOT / file).is_file())
    assert not missing_files, f"{PAGE.name} names test files that are not there: {missing_files}"
    missing = sorted(f"{file}::{test}" for file, test in tests
                     if not re.search(rf"^\s*def {test}\(", (ROOT / file).read_text(encoding="utf-8"), re.M))  # fmt: skip
    assert not missing, f"{PAGE.name} names tests that are not there: {missing}"


def test_a_reference_to_a_renamed_test_is_found() -> None:
    files, tests = named_tests("(`tests/test_a.py::test_one`, `::test_two`; `tests/test_b.py`)")
    assert files == {"tests/test_a.py", "tests/test_b.py"}
    assert tests == {("tests/test_a.py", "test_one"), ("tests/test_a.py", "test_two")}
