"""The notebooks run top to bottom in a real Jupyter kernel (nbclient, ipykernel) against the
current library, and show what their prose says they show: each code cell's printed text, its
displayed value (`text/plain`, a polars table parsed back into rows) and its pictures (PNG
outputs) are checked, not just that the cells ran."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest

from detector.bench.notebooks import execute
from tests.support import ROOT

pytest.importorskip("nbclient", reason="the dev extras run the notebooks: pip install -e '.[dev]'")
pytest.importorskip("ipykernel", reason="the dev extras run the notebooks: pip install -e '.[dev]'")

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@dataclass
class Cell:
    """What one code cell showed in the kernel."""

    printed: str  # its stdout
    shown: str  # the text/plain of its value ("" if none)
    images: int  # PNG pictures it displayed
    html: str = ""  # the text/html of its value, where it has one (a DataFrame)

    def table(self) -> list[dict[str, str]]:
        """The rows of a polars DataFrame shown as the cell's value, from its HTML (strings
        unquoted; long ones end in '…', as displayed; a row of '…' is skipped)."""
        rows = _Table.parse(self.html)
        if not rows:
            raise AssertionError(f"no table shown: {self.shown[:200]!r}")
        head, body = rows[0], rows[2:]  # names, dtypes, then the rows
        return [dict(zip(head, r, strict=True)) for r in body if set(r) != {"…"}]

    def column(self, name: str) -> list[str]:
        return [row[name] for row in self.table()]


class _Table(HTMLParser):
    """The cell texts of every row of an HTML table."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None

    @classmethod
    def parse(cls, html: str) -> list[list[str]]:
        t = cls()
        t.feed(html)
        return t.rows

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self.cell is not None and self.rows:
            text = "".join(self.cell)
            self.rows[-1].append(text[1:-1] if text.startswith('"') and text.endswith('"')
                                 else text.removeprefix('"'))
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def run(path: Path) -> tuple[list[Cell], float]:
    """Execute the notebook in a fresh kernel (`vigil bench notebooks`' own runner); the code
    cells' outputs, in order, and the seconds it took."""
    nb, took = execute(path)
    cells = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        printed = "".join(o.get("text", "") for o in cell.outputs
                          if o.output_type == "stream" and o.get("name") == "stdout")
        shown = "".join(o.data.get("text/plain", "") for o in cell.outputs
                        if o.output_type == "execute_result")
        html = "".join(o.data.get("text/html", "") for o in cell.outputs
                       if o.output_type == "execute_result")
        images = sum("image/png" in o.get("data", {}) for o in cell.outputs)
        cells.append(Cell(printed, shown, images, html))
    return cells, took


def _walkthrough(cells: list[Cell]) -> None:
    fault, stats, incidents, templates, ratios, scores = cells
    assert fault.printed.startswith("error_burst payments ")  # the injected fault
    assert "'events': 80000" in stats.shown and "'dead_letters_total': 0" in stats.shown
    found = incidents.printed.strip().splitlines()
    assert found and all(x.split()[0] == "payments" for x in found)  # the root cause, named
    assert "error ratio" in incidents.printed
    assert len(templates.printed.strip().splitlines()) == 8
    values = [float(x.split()[1]) for x in ratios.printed.strip().splitlines()]
    assert max(values) > 0.3 and min(values) < 0.05  # the burst, and the calm around it
    low, high = (float(x) for x in scores.shown.split("[")[1].split("]")[0].split(","))
    assert low < 0.99 and high > 0.999  # 10.5 is usual, 700 is not


def _investigate(cells: list[Cell]) -> None:
    run_, incidents, ranking, graph, timeline, series, templates, changed, hdfs, hdfs_templates, \
        hdfs_services = cells
    assert run_.printed.startswith("error_burst payments -> Analysis(events 80,000")
    assert incidents.column("root_cause") == ["payments"]  # the injected fault's service
    services = ranking.column("service")
    assert services[0] == "payments" and len(services) == 4
    assert graph.images == timeline.images == series.images == templates.images == 1
    assert "payments" in changed.column("service")  # with its callers, on one feature
    assert set(changed.column("feature")) == {"error_ratio"}
    if "absent" in hdfs.printed:
        return  # the shared Loghub sample is not beside the repository
    assert "events 2,000" in hdfs.printed and "dead_letters 0" in hdfs.printed
    assert len(hdfs_templates.table()) == 8
    assert sum(int(n) for n in hdfs_services.column("len")) == 2000


def _what_if(cells: list[Cell]) -> None:
    history, incidents, policy, decisions, story, timeline, summary, shorter = cells
    faults = history.printed.strip().splitlines()
    assert [f.split()[:2] for f in faults] == [["error_burst", "payments"], ["error_burst", "payments"],
                                               ["crash_loop", "cart"], ["latency_regression", "checkout"]]
    assert "incidents 4" in history.shown
    assert incidents.column("root_cause_at_open") == ["payments", "payments", "cart", "checkout"]
    assert policy.printed.startswith("4 steps would have run")
    verdicts = decisions.column("verdict")
    assert {"dry_run", "not_better", "suppressed", "escalated", "verified"} <= set(verdicts)
    told = story.printed
    # what the prose says the history shows about the policy
    assert "would restart payments" in told and "would rollback payments" in told
    assert "restart suppressed by cooldown" in told
    assert "restart-again suppressed by restart_loop" in told and "would page" in told
    assert "no rule matches" in told
    assert timeline.images == 1
    per = summary.table()
    assert len(per) == 4 and all(int(r["suppressed"]) >= 1 for r in per if "cart" in r["incident"])
    assert "4 steps with a 30-minute cooldown, 5 with a 5-minute one" in shorter.printed
    assert len(shorter.table()) == 4


def _eval_nab_prints() -> tuple[list[list[str]], list[list[str]]]:
    """What `vigil eval nab` prints on the shared corpus: the cells of its scores table's rows
    and of its held-out table's rows."""
    import tempfile

    from typer.testing import CliRunner

    from detector.cli import app

    nab = ROOT.parent / "shared" / "datasets" / "nab"
    with tempfile.TemporaryDirectory() as out:
        result = CliRunner().invoke(app, [
            "eval", "nab", "--data", str(nab / "data"), "--labels",
            str(nab / "labels" / "combined_windows.json"), "--out", out])
    assert result.exit_code == 0, result.output
    rows = [[c.strip() for c in line.strip().strip("│").split("│")]
            for line in result.output.splitlines() if line.startswith("│")]
    assert len(rows) == 6, result.output  # three profiles, twice
    return rows[:3], rows[3:]


def _near(shown: str, printed: str) -> bool:
    """A figure the notebook shows (full precision) is the one the command prints (.1f)."""
    return abs(float(shown) - float(printed)) <= 0.05 + 1e-9


def _nab(cells: list[Cell]) -> None:
    run_, profiles, counts, scores, corpora, files, kinds, missed, good, bad, noisy, \
        summary = cells
    if "absent" in run_.printed:  # the shared NAB corpus is not beside the repository
        assert all(c.shown == "" and not c.images for c in cells[1:])
        assert "absent" in summary.printed
        return
    assert run_.printed.startswith(
        "NabReport('default', quiet 100 rows after an alarm: 41 files in 5 corpora")
    table, held = _eval_nab_prints()
    # the profiles: scores, thresholds, windows and false positives as the command prints them
    assert profiles.column("profile") == ["standard", "reward_low_FP_rate", "reward_low_FN_rate"]
    for row, cli, cli_held in zip(profiles.table(), table, held, strict=True):
        assert _near(row["score"], cli[1]) and _near(row["held_out_mean"], cli_held[1])
        assert f"{row['windows_found']}/{row['windows']}" == cli[3]
        assert row["false_positives"] == cli[4]
    # per corpus: the five shared corpora, four of them with windows and a held-out score
    names = counts.column("corpus")
    assert names == ["artificialNoAnomaly", "artificialWithAnomaly", "realAWSCloudwatch",
                     "realAdExchange", "realTraffic"]
    assert sum(int(h) for h in counts.column("hits")) == int(table[0][3].split("/")[0])
    assert sum(int(f) for f in counts.column("false_positives")) == int(table[0][4])
    assert scores.column("corpus") == names
    assert all(_near(v, c) for v, c in zip(scores.column("standard"), table[0][5:], strict=True))
    held_out = [v for v in scores.column("standard_held_out") if v != "null"]
    assert len(held_out) == 4 and all(_near(v, c) for v, c in zip(held_out, held[0][2:], strict=True))
    # the figures, and tables that are not empty
    assert corpora.images == good.images == bad.images == noisy.images == 1
    assert len(files.table()) == 8
    by_kind = dict(zip(kinds.column("kind"), kinds.column("len"), strict=True))
    assert by_kind["hit"] == table[0][3].split("/")[0] and by_kind["false positive"] == table[0][4]
    assert len(missed.table()) == 64 - int(by_kind["hit"])
    found, windows = good.printed.split(": ")[1].split()[0].split("/")
    assert found == windows != "0"  # a file where every window is found
    found, windows = bad.printed.split(": ")[1].split()[0].split("/")
    assert int(found) < int(windows)  # a file with a miss
    assert int(noisy.printed.rsplit(": ", 1)[1]) > 0  # a file with false positives
    assert summary.printed.startswith(f"standard {table[0][1]} (held out {held[0][1]})")
    # the conclusion's claim: the weakest corpus has the most false positives
    weakest = summary.printed.split("weakest corpus ")[1].split()[0]
    fps = dict(zip(names, (int(f) for f in counts.column("false_positives")), strict=True))
    assert weakest == max(fps, key=lambda c: fps[c])


def _metrics(cells: list[Cell]) -> None:
    from detector.bench.servers import prometheus_available

    data, source, run_, series, day, anomalies, plot, against, outside, summary, by_baseline, \
        compared, end = cells
    # the local Prometheus where its binaries are installed, NAB's CSV where they are not
    assert source.printed.startswith("source: prometheus http://127.0.0.1:" if prometheus_available()
                                     else "source: csv")
    assert plot.images == compared.images == 1
    assert series.column("points") == ["4032"] and int(series.column("anomalies")[0]) >= 2
    assert len(anomalies.table()) == int(series.column("anomalies")[0])
    assert summary.column("baseline") == ["default", "level", "periodic", "seasonal"]
    assert by_baseline.column("hit") == ["2"] * 4  # every baseline finds both windows
    assert against.column("hit") == ["true", "true"]
    assert len(outside.table()) == len(anomalies.table()) - 2  # one anomaly inside each window
    assert end.printed.startswith("ran in ")
    if "absent" in data.printed:
        return  # the shared NAB corpus is not beside the repository: a synthetic stand-in ran
    assert data.printed.startswith("series: NAB realAWSCloudwatch/rds_cpu_utilization_e47b3b.csv, "
                                   "4,032 points")
    assert "4,032 points read" in run_.printed and "duplicates 0, missing 0, gaps 0" in run_.printed
    assert series.column("service") == ["rds"]
    # found at the very samples NAB labels (combined_labels.json), the spike and the step
    assert against.column("first") == ["2014-04-13 06:52:00 UTC", "2014-04-18 23:27:00 UTC"]
    assert day.column("time")[0] == "2014-04-13 06:52:00 UTC" and day.column("anomaly")[0] == "true"
    assert "subsequence" in outside.column("model")  # what the prose says fired outside
    assert summary.column("anomalies") == ["6", "4", "4", "5"]  # the counts the prose discusses


EXPECT: dict[str, Callable[[list[Cell]], None]] = {
    "remediation_what_if.ipynb": _what_if,
    "replay_walkthrough.ipynb": _walkthrough,
    "investigate_incident.ipynb": _investigate,
    "nab_evaluation.ipynb": _nab,
    "metrics.ipynb": _metrics,
}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_shows_what_it_says(path: Path, record_property: Callable[..., None]) -> None:
    assert path.name in EXPECT, f"{path.name}: say in EXPECT what it must show"
    cells, took = run(path)
    record_property("seconds", round(took, 1))  # the under-60 s target is read off `vigil bench`
    EXPECT[path.name](cells)


def test_there_is_a_notebook() -> None:
    assert NOTEBOOKS
