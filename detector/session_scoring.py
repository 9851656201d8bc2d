"""Online, unsupervised scoring of sessions (HDFS blocks, user sessions, jobs) by their template
counts: templates that earlier sessions rarely hold, and counts that earlier sessions rarely reach.

Each session is judged against the sessions before it (conformal p-values, no distribution
assumed), then learned. A session's p-value is the smallest of its templates' presence p-values
and count p-values, Bonferroni-corrected for how many were tested; its score is -log10(p) / 10.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field


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
    a count at least as far from the median) / (1 + holders), times the number of count tests.
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
    sessions: int = 0
    holders: Counter[str] = field(default_factory=Counter)  # sessions holding each template
    counts: dict[str, Counter[int]] = field(default_factory=dict)  # template -> count histogram

    def learn(self, templates: Counter[str]) -> None:
        self.sessions += 1
        for t, c in templates.items():
            self.holders[t] += 1
            self.counts.setdefault(t, Counter())[c] += 1

    def forget(self, templates: Counter[str]) -> None:
        """Undo `learn` (to judge a warm-up session without itself)."""
        self.sessions -= 1
        for t, c in templates.items():
            self.holders[t] -= 1
            self.counts[t][c] -= 1

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
