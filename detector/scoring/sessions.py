"""Online, unsupervised scoring of sessions (HDFS blocks, user sessions, jobs) by their template
counts: templates that earlier sessions rarely hold, and counts that earlier sessions rarely reach.

Each session is judged against the sessions before it (conformal p-values, no distribution
assumed), then learned. Three kinds of test: a template's presence, a template's count, and
count invariants between two templates that usually occur equally often (Invariants Mining in
its simplest form: "as many blocks received as receiving"), learned online. A session's p-value
is the smallest of its p-values, the count and invariant ones Bonferroni-corrected for how many
were tested; its score is -log10(p) / 10.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from itertools import combinations


@dataclass(slots=True)
class SessionVerdict:
    session_id: str
    score: float  # -log10(p) / 10, capped at 1
    p_value: float
    predicted: bool
    reason: str  # the template (and count) behind the smallest p-value


@dataclass
class SessionScorer:
    """Learns sessions' template counts; `judge` scores one session against those before it.

    Presence: p = (1 + earlier sessions holding the template) / (1 + earlier sessions), so a
    template no earlier session held is as surprising as the history is long. Counts: for a
    template earlier sessions held at least `min_support` times, p = (1 + earlier holders with
    a count at least as far from the median) / (1 + holders). Invariants: for two templates
    seen together in at least `min_support` earlier sessions and equal in nine of ten, unequal
    counts give p = (1 + sessions where they were unequal) / (1 + sessions holding either; an
    absent template counts 0). Count and invariant p-values are multiplied by the number of such
    tests (Bonferroni).
    A session is predicted anomalous at p <= `alpha`: with 100 earlier sessions, a template none
    of them held gives p = 0.0099.

    >>> s = SessionScorer()
    >>> for i in range(300):
    ...     s.learn(Counter({"open": 1, "write": 3, "close": 1}))
    >>> s.judge("a", Counter({"open": 1, "write": 3, "close": 1})).predicted
    False
    >>> v = s.judge("b", Counter({"open": 1, "write": 3, "exception": 1}))
    >>> v.predicted, v.reason
    (True, 'new template: exception')
    """

    alpha: float = 0.02
    min_support: int = 20
    max_pair_templates: int = 30  # invariants among a session's most frequent templates only
    sessions: int = 0
    holders: Counter[str] = field(default_factory=Counter)  # sessions holding each template
    counts: dict[str, Counter[int]] = field(default_factory=dict)  # template -> count histogram
    pairs: Counter[tuple[str, str]] = field(default_factory=Counter)  # sessions holding either
    unequal: Counter[tuple[str, str]] = field(default_factory=Counter)  # ... with unequal counts
    partners: dict[str, set[str]] = field(default_factory=dict)  # templates seen with each

    def _pairs(self, templates: Counter[str]) -> list[tuple[str, str]]:
        """Pairs to learn or test: among the session's most frequent templates, and between each
        of them and its known partners the session lacks (a count of 0)."""
        top = sorted(t for t, _ in templates.most_common(self.max_pair_templates))
        out = set(combinations(top, 2))
        for a in top:
            for b in self.partners.get(a, ()):
                if b not in templates:
                    out.add((a, b) if a < b else (b, a))
        return sorted(out)

    def learn(self, templates: Counter[str]) -> None:
        self._update(templates, 1)

    def forget(self, templates: Counter[str]) -> None:
        """Undo `learn` (to judge a warm-up session without itself)."""
        self._update(templates, -1)

    def _update(self, templates: Counter[str], sign: int) -> None:
        self.sessions += sign
        for t, c in templates.items():
            self.holders[t] += sign
            self.counts.setdefault(t, Counter())[c] += sign
        for a, b in self._pairs(templates):
            self.pairs[(a, b)] += sign
            self.unequal[(a, b)] += sign * (templates.get(a, 0) != templates.get(b, 0))
            if sign > 0:
                self.partners.setdefault(a, set()).add(b)
                self.partners.setdefault(b, set()).add(a)

    def judge(self, session_id: str, templates: Counter[str]) -> SessionVerdict:
        n = self.sessions
        presence, p_reason = 1.0, ""
        count, c_reason, tests = 1.0, "", 0
        for t, c in templates.items():
            held = self.holders.get(t, 0)
            p = (1 + held) / (1 + n)
            if p < presence:
                presence = p
                p_reason = f"new template: {t}" if held == 0 else f"rare template: {t}"
            if held >= self.min_support:
                tests += 1
                pc = self._count_p(t, c, held)
                if pc < count:
                    count, c_reason = pc, f"unusual count {c} of: {t}"
        for a, b in self._pairs(templates):
            support = self.pairs.get((a, b), 0)
            if support < self.min_support or self.unequal[(a, b)] * 10 > support:
                continue  # too young, or not an invariant (unequal in over a tenth of sessions)
            tests += 1
            ca, cb = templates.get(a, 0), templates.get(b, 0)
            if ca != cb:
                # How often earlier sessions broke this equality, conformally.
                pi = (1 + self.unequal[(a, b)]) / (1 + support)
                if pi < count:
                    count = pi
                    c_reason = f"broken invariant: {ca} x {a} vs {cb} x {b}"
        count = min(1.0, count * max(tests, 1))
        p_value, reason = (presence, p_reason) if presence <= count else (count, c_reason)
        if not n:
            p_value, reason = 1.0, ""
        score = min(1.0, -math.log10(max(p_value, 1e-300)) / 10.0)
        return SessionVerdict(session_id, score, p_value, p_value <= self.alpha, reason)

    def _count_p(self, template: str, count: int, held: int) -> float:
        hist = self.counts[template]
        values = sorted(hist.elements())
        median = values[len(values) // 2]
        far = abs(count - median)
        if far == 0:
            return 1.0
        at_least = sum(k for v, k in hist.items() if abs(v - median) >= far)
        return (1 + at_least) / (1 + held)
