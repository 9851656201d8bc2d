"""Request verdicts and learned call edges as records that name services and templates, so an
ingest task's ids (its own service index and template miner) never leave it.

>>> from detector.correlation.chains import RequestVerdict
>>> v = RequestVerdict("r1", root=1, propagators=[0], onset=5.0, root_onset=5.5, kinds=1,
...                    templates=[3], silent=False, method="spans", edges={(0, 1)})
>>> rec = verdict_record(v, ["gateway", "cart"], lambda t: f"tmpl {t}")
>>> rec["root"], rec["edges"], rec["templates"]
('cart', [['gateway', 'cart']], ['tmpl 3'])
>>> from detector.services import ServiceIndex
>>> names = ServiceIndex()
>>> texts = TemplateTexts()
>>> w = from_record(rec, names, texts)
>>> names.names[w.root], texts.text(w.templates[0]), w.onset
('cart', 'tmpl 3', 5.0)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from detector.correlation.chains import RequestVerdict
from detector.services import ServiceIndex


class RecordError(ValueError):
    """A verdict or edge record that is not one."""


class TemplateTexts:
    """Template texts by id, for the stage that ranks root causes (bounded: the oldest go)."""

    def __init__(self, cap: int = 50_000) -> None:
        self.cap = cap
        self._id: dict[str, int] = {}
        self._text: dict[int, str] = {}
        self._next = 0

    def id_of(self, text: str) -> int:
        tid = self._id.get(text)
        if tid is None:
            if len(self._id) >= self.cap:
                oldest = next(iter(self._id))
                self._text.pop(self._id.pop(oldest))
            tid = self._id[text] = self._next
            self._text[tid] = text
            self._next += 1
        return tid

    def text(self, tid: int) -> str:
        return self._text[tid]


def verdict_record(v: RequestVerdict, names: Sequence[str], text: Callable[[int], str]
                   ) -> dict[str, Any]:
    """`v` with services by name and templates by text."""
    return {
        "request_id": v.request_id, "root": names[v.root],
        "propagators": [names[s] for s in v.propagators], "onset": v.onset,
        "root_onset": v.root_onset, "kinds": v.kinds,
        "templates": [text(t) for t in v.templates], "silent": v.silent, "method": v.method,
        "edges": sorted([names[a], names[b]] for a, b in v.edges),
    }


def from_record(rec: Any, services: ServiceIndex, texts: TemplateTexts) -> RequestVerdict:
    """A verdict record in this stage's ids; anything else raises `RecordError`."""
    try:
        if not isinstance(rec, dict):
            raise TypeError("not an object")
        strs = [rec["request_id"], rec["root"], *rec["propagators"], *rec["templates"],
                rec["method"]]
        if not all(isinstance(x, str) for x in strs):
            raise TypeError("names must be strings")
        onset, root_onset = float(rec["onset"]), float(rec["root_onset"])
        if not (math.isfinite(onset) and math.isfinite(root_onset)):
            raise ValueError("onsets must be finite")
        if type(rec["kinds"]) is not int or not isinstance(rec["silent"], bool):
            raise TypeError("kinds must be an int, silent a bool")
        edges = {(services.id_of(a), services.id_of(b)) for a, b in _pairs(rec["edges"])}
    except (KeyError, TypeError, ValueError) as exc:
        raise RecordError(f"not a request verdict: {exc}") from exc
    return RequestVerdict(
        request_id=rec["request_id"], root=services.id_of(rec["root"]),
        propagators=[services.id_of(s) for s in rec["propagators"]], onset=onset,
        root_onset=root_onset, kinds=rec["kinds"],
        templates=[texts.id_of(t) for t in rec["templates"]], silent=rec["silent"],
        method=rec["method"], edges=edges,
    )


def edge_records(edges: dict[tuple[int, int], int], names: Sequence[str]) -> list[list[Any]]:
    """Call counts of learned edges as [caller, callee, count] by name."""
    return [[names[a], names[b], n] for (a, b), n in sorted(edges.items())]


def edges_from(rows: Any, services: ServiceIndex) -> dict[tuple[int, int], int]:
    """Rows of `edge_records` in this stage's ids; anything else raises `RecordError`."""
    out: dict[tuple[int, int], int] = {}
    try:
        for a, b, n in rows:
            if not (isinstance(a, str) and isinstance(b, str) and type(n) is int and n > 0):
                raise TypeError("rows are [caller, callee, count > 0]")
            k = (services.id_of(a), services.id_of(b))
            out[k] = out.get(k, 0) + n
    except (TypeError, ValueError) as exc:
        raise RecordError(f"not edge counts: {exc}") from exc
    return out


def _pairs(rows: Any) -> list[tuple[str, str]]:
    out = []
    for a, b in rows:
        if not (isinstance(a, str) and isinstance(b, str)):
            raise TypeError("edges are [caller, callee] names")
        out.append((a, b))
    return out
