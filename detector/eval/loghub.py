"""`vigil eval sessions` and `vigil eval lines`: session- and line-level anomaly detection on real
logs, scored online and unsupervised; labels, when given, are read only for the report."""

from __future__ import annotations

import csv
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from detector.config import TemplatesConfig
from detector.eval.loglines import LogLine, read_lines
from detector.events import LEVEL_ERROR, LEVEL_FATAL
from detector.scoring.sessions import SessionScorer, SessionVerdict
from detector.templates.miner import TemplateMiner


@dataclass(slots=True)
class Metrics:
    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn,
                "precision": round(self.precision, 4), "recall": round(self.recall, 4),
                "f1": round(self.f1, 4)}


def metrics(predicted: dict[str, bool], truth: dict[str, bool]) -> Metrics:
    """Confusion counts over the ids present in both.

    >>> m = metrics({"a": True, "b": True, "c": False}, {"a": True, "b": False, "c": True})
    >>> (m.tp, m.fp, m.fn), round(m.f1, 2)
    ((1, 1, 1), 0.5)
    """
    tp = fp = fn = tn = 0
    for k, pred in predicted.items():
        if k not in truth:
            continue
        actual = truth[k]
        tp += pred and actual
        fp += pred and not actual
        fn += (not pred) and actual
        tn += (not pred) and not actual
    return Metrics(tp, fp, fn, tn)


def read_labels(path: Path) -> dict[str, bool]:
    """id -> anomalous, from a CSV whose first column is the id and which has a `Label` column
    (`Anomaly`/`Normal`, or 1/0, or a BGL category with `-` for normal)."""
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or "Label" not in reader.fieldnames:
            raise ValueError(f"{path}: needs a header with a Label column")
        key = reader.fieldnames[0]
        out = {}
        for row in reader:
            label = (row["Label"] or "").strip()
            out[row[key].strip()] = label not in ("Normal", "0", "-", "")
    return out


# ---- sessions ----------------------------------------------------------------------------------
@dataclass
class SessionReport:
    sessions: int
    events: int
    bad_lines: int
    warmup: int
    predicted: int
    overall: Metrics | None = None
    distinguishable: Metrics | None = None  # normal sessions + anomalous ones unlike any normal
    indistinguishable_anomalies: int = 0
    top_reasons: list[tuple[str, int]] = field(default_factory=list)


def score_sessions(sessions: list[tuple[str, Counter[str]]], warmup_share: float, alpha: float
                   ) -> list[SessionVerdict]:
    """Judge sessions in order; the first `warmup_share` of them are learned up front (unlabeled)
    and each judged without itself; every later session is judged, then learned."""
    if not 0 <= warmup_share < 1:
        raise ValueError("warmup_share must be in [0, 1)")
    scorer = SessionScorer(alpha=alpha)
    warm = math.ceil(warmup_share * len(sessions))
    for _, counts in sessions[:warm]:
        scorer.learn(counts)
    out = []
    for i, (sid, counts) in enumerate(sessions):
        if i < warm:
            scorer.forget(counts)
            out.append(scorer.judge(sid, counts))
            scorer.learn(counts)
        else:
            out.append(scorer.judge(sid, counts))
            scorer.learn(counts)
    return out


def eval_sessions(events: Path, session_field: str, out: Path, labels: Path | None = None,
                  message_field: str = "message", warmup_share: float = 0.1, alpha: float = 0.02
                  ) -> SessionReport:
    miner = TemplateMiner(TemplatesConfig())
    order: dict[str, list[str]] = {}
    bad = n_events = 0
    with events.open("rb") as fh:
        for raw in fh:
            if not raw.strip():
                continue
            try:
                rec = orjson.loads(raw)
                sid, msg = rec[session_field], rec[message_field]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                bad += 1
                continue
            if not isinstance(sid, str | int) or not isinstance(msg, str):
                bad += 1
                continue
            n_events += 1
            order.setdefault(str(sid), []).append(miner.text(miner.template_of(msg)))
    sessions = [(sid, Counter(seq)) for sid, seq in order.items()]
    verdicts = score_sessions(sessions, warmup_share, alpha)
    _write(out, ["session_id", "score", "predicted"],
           [(v.session_id, f"{v.score:.6f}", int(v.predicted)) for v in verdicts])
    report = SessionReport(len(sessions), n_events, bad, math.ceil(warmup_share * len(sessions)),
                           sum(v.predicted for v in verdicts))
    report.top_reasons = Counter(v.reason.split(":")[0] for v in verdicts if v.predicted).most_common(5)
    if labels is not None:
        truth = read_labels(labels)
        pred = {v.session_id: v.predicted for v in verdicts}
        report.overall = metrics(pred, truth)
        normal_seqs = {tuple(seq) for sid, seq in order.items() if truth.get(sid) is False}
        alike = {sid for sid, seq in order.items() if truth.get(sid) and tuple(seq) in normal_seqs}
        report.indistinguishable_anomalies = len(alike)
        report.distinguishable = metrics({k: v for k, v in pred.items() if k not in alike}, truth)
    return report


# ---- lines -------------------------------------------------------------------------------------
# A line that only prints one field of a multi-line dump ("data address: 0x...",
# "machine check enable..............0", "r24=0x.. r25=0x..", "special purpose registers:")
# carries the detail of an event logged on another line, not an event of its own.
_V = r"<[^>]+>"
_DETAIL = re.compile(
    rf"(?:\.{{3,}}\s*{_V}$)"  # a dotted field
    rf"|(?:^[\w\s()/,'.-]+:(?:\s*{_V})+$)"  # label: value(s)
    rf"|(?:^(?:\w+[=:]{_V}\s*)+$)"  # a register list
    rf"|(?:^[\w\s]+:$)"  # a section header
)
MIN_LEVEL = {"hdfs": LEVEL_ERROR, "bgl": LEVEL_FATAL}


@dataclass
class LineReport:
    lines: int
    unparsed: int
    predicted: int
    sessions: int = 0
    overall: Metrics | None = None  # per line (BGL) or per block (HDFS)
    distinguishable: Metrics | None = None
    baseline: Metrics | None = None  # the severity-keyword rule, for comparison
    unit: str = "line"


def is_detail(template: str) -> bool:
    """Whether a template is one field of a dump rather than an event.

    >>> is_detail("data address: <HEX>"), is_detail("machine check enable..............<NUM>")
    (True, True)
    >>> is_detail("r24=<HEX> r25=<HEX>"), is_detail("program interrupt: <*> <*>")
    (True, True)
    >>> is_detail("data TLB error interrupt"), is_detail("rts: kernel terminated for reason <*>")
    (False, False)
    >>> is_detail("Lustre mount FAILED : <*> : point <*>")
    False
    """
    return bool(_DETAIL.search(template.strip()))


def eval_lines(log: Path, fmt: str, out: Path, labels: Path | None = None,
               warmup_share: float = 0.1, alpha: float = 0.02) -> LineReport:
    lines = list(read_lines(log, fmt))
    miner = TemplateMiner(TemplatesConfig())
    templates = [miner.text(miner.template_of(ln.content)) for ln in lines]
    report = LineReport(len(lines), sum(not ln.parsed for ln in lines), 0)
    if fmt == "hdfs":
        return _hdfs_lines(lines, templates, out, labels, warmup_share, alpha, report)
    rows = []
    pred: dict[str, bool] = {}
    keyword: dict[str, bool] = {}
    floor = MIN_LEVEL[fmt]
    for ln, tmpl in zip(lines, templates, strict=True):
        severe = ln.level >= floor
        detail = is_detail(tmpl)
        flagged = severe and not detail
        score = ln.level / 24.0 * (0.4 if detail else 1.0)
        rows.append((ln.line_id, f"{score:.6f}", int(flagged)))
        pred[str(ln.line_id)] = flagged
        keyword[str(ln.line_id)] = severe
    _write(out, ["line_id", "score", "predicted"], rows)
    report.predicted = sum(pred.values())
    if labels is not None:
        truth = read_labels(labels)
        report.overall = metrics(pred, truth)
        report.baseline = metrics(keyword, truth)
    return report


def _hdfs_lines(lines: list[LogLine], templates: list[str], out: Path, labels: Path | None,
                warmup_share: float, alpha: float, report: LineReport) -> LineReport:
    """HDFS labels are per block: lines are grouped by the block ids they name, blocks are scored
    as sessions, and a line is predicted anomalous when any of its blocks is (or it is severe)."""
    order: dict[str, list[str]] = {}
    for ln, tmpl in zip(lines, templates, strict=True):
        for blk in ln.sessions:
            order.setdefault(blk, []).append(tmpl)
    verdicts = {v.session_id: v for v in score_sessions(
        [(sid, Counter(seq)) for sid, seq in order.items()], warmup_share, alpha)}
    rows = []
    for ln in lines:
        vs = [verdicts[b] for b in ln.sessions]
        score = max([v.score for v in vs] + [ln.level / 24.0 if ln.level >= LEVEL_ERROR else 0.0])
        flagged = any(v.predicted for v in vs) or ln.level >= MIN_LEVEL["hdfs"]
        rows.append((ln.line_id, f"{score:.6f}", int(flagged)))
    _write(out, ["line_id", "score", "predicted"], rows)
    report.predicted = sum(r[2] for r in rows)
    report.sessions = len(verdicts)
    report.unit = "block"
    if labels is not None:
        truth = read_labels(labels)
        pred = {k: v.predicted for k, v in verdicts.items()}
        report.overall = metrics(pred, truth)
        normal = {tuple(seq) for sid, seq in order.items() if truth.get(sid) is False}
        alike = {sid for sid, seq in order.items() if truth.get(sid) and tuple(seq) in normal}
        report.distinguishable = metrics({k: v for k, v in pred.items() if k not in alike}, truth)
        report.baseline = metrics(dict.fromkeys(verdicts, False), truth)
    return report


def _write(path: Path, header: list[str], rows: list[tuple[Any, ...]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
