"""What a request's call chain and root-cause verdict are: the types `correlation.verdicts`
computes, a block of closed requests at a time.

The chain comes from span/parent ids when the events carry them, otherwise from caller/callee
fields, otherwise there is none and time order decides. A service named as the callee of a
failed call that logged nothing itself in the request (crashed, hung, unreachable) is a
candidate too, one level below its caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Edges = set[tuple[int, int]]  # (caller service, callee service)


@dataclass(slots=True)
class Chain:
    edges: Edges
    depth: dict[int, int]  # service -> calls from the request's entry service
    method: str  # "spans" | "caller" | "timing"


@dataclass(slots=True)
class RequestVerdict:
    """What one anomalous request says: its root-cause candidate and who only propagated it."""

    request_id: str
    root: int  # service id
    propagators: list[int]
    onset: float  # time of the request's first anomalous event
    root_onset: float  # time of the root's first anomalous event (its caller's, if silent)
    kinds: int  # the root's anomaly bits (event_flags)
    templates: list[int]  # template ids of the root's anomalous events
    silent: bool  # the root logged nothing: named by a failed call's callee field
    method: str
    edges: Edges = field(default_factory=set)

    @property
    def services(self) -> list[int]:
        return [self.root, *self.propagators]
