"""The default metric detector: which members, with which settings, judged how. One place, so
`vigil eval nab`, `vigil metrics` and the pipeline's window features run the same thing."""

from __future__ import annotations

from models.base import Direction, SeriesDetector
from models.counts import CountTail
from models.episode import EpisodeRule
from models.ewma import EwmaZScore
from models.judge import Judge
from models.periodic import PeriodicZScore
from models.shift import ShiftZScore
from models.subsequence import SubsequenceKnn

DAY = 86_400.0
WEEK = 7 * DAY
ALPHA = 0.001  # the baselines remember about 1,000 steps: 3.5 days of 5-minute samples
WARMUP = 12
QUIET = 100  # steps an alarm silences its series for: one page per episode
CALIBRATION_K = 20  # extreme past values that measure a series' tail (+/- 20% counting error)
CALIBRATION_HISTORY = 100  # values before a series' tail is calibrated
SHIFT_SHORT = 0.1  # the recent mean of the shift member: about 20 steps
MEMBERS = ("ewma", "periodic", "weekly", "shift", "subsequence", "counts")

# Settings chosen by leave-one-corpus-out on the shared NAB files (pick on three corpora, score
# the fourth); see docs/evaluation.md for the figures and what was tried.


def buckets(period: float, step_seconds: float, most: int) -> int:
    """Phase slots of a period for a series sampled every `step_seconds`: one per step, at most
    `most`.

    >>> buckets(DAY, 300.0, 288), buckets(DAY, 3600.0, 288), buckets(WEEK, 300.0, 336)
    (288, 24, 336)
    """
    return max(1, min(most, int(period // max(step_seconds, 1e-9))))


def default_members(step_seconds: float = 300.0, alpha: float = ALPHA, warmup: int = WARMUP,
                    clip_z: float = float("inf")) -> list[SeriesDetector]:
    """The default ensemble's members, the level model first:

    - `EwmaZScore`: one value far from the long baseline;
    - `PeriodicZScore` (a day): unlike the same time yesterday, where a daily shape explains the
      series better than a flat level;
    - `PeriodicZScore` named "weekly" (a week): unlike the same time last week, once two weeks
      of history show that a weekly shape explains it;
    - `ShiftZScore`: the recent mean has moved (a drift, a lasting step);
    - `SubsequenceKnn`: the recent window's shape is far from every shape the series has shown
      (two scales: 16 and 64 steps);
    - `CountTail`: a count's own skewed, discrete tail (negative binomial), on series of counts
      that it predicts better than a normal.

    >>> [m.name for m in default_members()]
    ['ewma', 'periodic', 'weekly', 'shift', 'subsequence', 'counts']
    >>> [m.buckets for m in default_members(3600.0)[1:3]]
    [24, 168]
    """
    return [
        EwmaZScore(alpha=alpha, clip_z=clip_z, warmup=warmup),
        PeriodicZScore(period=DAY, buckets=buckets(DAY, step_seconds, 288), alpha=alpha,
                       warmup=warmup),
        PeriodicZScore(period=WEEK, buckets=buckets(WEEK, step_seconds, 336), alpha=alpha,
                       warmup=warmup, name="weekly"),
        ShiftZScore(alpha=alpha, short=SHIFT_SHORT, warmup=warmup),
        SubsequenceKnn(warmup=warmup),
        CountTail(alpha=alpha, warmup=warmup),
    ]


def default_judge(step_seconds: float = 300.0, direction: Direction = "both",
                  alpha: float = ALPHA, warmup: int = WARMUP,
                  clip_z: float = float("inf")) -> Judge:
    """The default members through the one judge: each member's tail calibrated against the
    series' own history, Bonferroni over the members that take part in a row (a gated member
    only where it explains the series, an unready one abstaining); the verdict names the member
    that spoke.

    >>> import numpy as np
    >>> judge = default_judge(60.0)
    >>> rng = np.random.default_rng(0)
    >>> for t in range(300):
    ...     v = judge.score_learn(np.array([0]), rng.normal(5.0, 1.0, 1), ts=np.array([60.0 * t]))
    >>> v = judge.score_learn(np.array([0]), np.array([25.0]), ts=np.array([18_000.0]))
    >>> bool(v.p[0] < 1e-4), judge.members[int(v.speaker[0])].name
    (True, 'ewma')
    """
    return Judge(default_members(step_seconds, alpha=alpha, warmup=warmup, clip_z=clip_z),
                 direction=direction, warmup=warmup, calibration_history=CALIBRATION_HISTORY,
                 calibration_k=CALIBRATION_K)


def default_episodes(quiet: int = QUIET) -> EpisodeRule:
    """The episode rule that goes with the default: an alarm silences its series for `quiet`
    of its steps.

    >>> default_episodes().quiet
    100
    """
    return EpisodeRule(quiet=quiet)
