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


def _investigate(cells: list[tuple[str, Any]]) -> None:
    from matplotlib.figure import Figure

    run_, incidents, ranking, timeline, series, templates, changed, hdfs, hdfs_templates, \
        hdfs_services = cells
    assert run_[0].startswith("error_burst payments -> Analysis(events 80,000")
    assert incidents[1]["root_cause"].to_list() == ["payments"]  # the injected fault's service
    assert ranking[1]["service"][0] == "payments" and len(ranking[1]) == 4
    for fig in (timeline[1], series[1], templates[1]):
        assert isinstance(fig, Figure) and fig.axes and fig.axes[0].has_data()
    assert len(series[1].axes[0].collections[-1].get_offsets()) > 0  # the anomalies, marked
    assert any("fail" in line.get_label() for line in templates[1].axes[0].lines)
    assert "payments" in changed[1]["service"].to_list()  # with its callers, on one feature
    assert set(changed[1]["feature"]) == {"error_ratio"}
    if hdfs[1] is None and "absent" in hdfs[0]:
        return  # the shared Loghub sample is not beside the repository
    assert "events 2,000" in hdfs[0] and "dead_letters 0" in hdfs[0]
    assert len(hdfs_templates[1]) == 8 and hdfs_services[1]["len"].sum() == 2000


EXPECT: dict[str, Callable[[list[tuple[str, Any]]], None]] = {
    "replay_walkthrough.ipynb": _walkthrough,
    "investigate_incident.ipynb": _investigate,
}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_shows_what_it_says(path: Path) -> None:
    assert path.name in EXPECT, f"{path.name}: say in EXPECT what it must show"
    EXPECT[path.name](run(path))


def test_there_is_a_notebook() -> None:
    assert NOTEBOOKS
