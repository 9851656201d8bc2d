"""The notebooks run top to bottom against the current library, and show what their prose says
they show: each code cell's printed output and last value (what Jupyter would display) are
checked."""

from __future__ import annotations

import ast
import contextlib
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def run(path: Path) -> list[tuple[str, Any]]:
    """(printed text, value of the last expression) of each code cell, in order."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    namespace: dict[str, Any] = {}
    shown = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        tree = ast.parse("".join(cell["source"]))
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(tree, path.name, "exec"), namespace)
            value = (eval(compile(ast.Expression(last.value), path.name, "eval"), namespace)
                     if last is not None else None)
        shown.append((out.getvalue(), value))
    return shown


def _walkthrough(cells: list[tuple[str, Any]]) -> None:
    fault, stats, incidents, templates, ratios, scores = cells
    assert fault[0].startswith("error_burst payments ")  # the injected fault
    assert stats[1]["events"] == 80_000 and stats[1]["dead_letters_total"] == 0
    found = incidents[0].strip().splitlines()
    assert found and all(x.split()[0] == "payments" for x in found)  # the root cause, named
    assert "error ratio" in incidents[0]
    assert len(templates[0].strip().splitlines()) == 8
    values = [float(x.split()[1]) for x in ratios[0].strip().splitlines()]
    assert max(values) > 0.3 and min(values) < 0.05  # the burst, and the calm around it
    assert scores[1][0] < 0.99 and scores[1][1] > 0.999  # 10.5 is usual, 700 is not


EXPECT: dict[str, Callable[[list[tuple[str, Any]]], None]] = {
    "replay_walkthrough.ipynb": _walkthrough,
}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_shows_what_it_says(path: Path) -> None:
    assert path.name in EXPECT, f"{path.name}: say in EXPECT what it must show"
    EXPECT[path.name](run(path))


def test_there_is_a_notebook() -> None:
    assert NOTEBOOKS
