"""What several benchmarks measure alike: resident memory."""

from __future__ import annotations

import resource


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20
