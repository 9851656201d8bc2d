"""What changed per service between a *before* and an *after* set of one capture's records.

Every signal is a log ratio (after over before), so they share one scale: 1.0 means "about
2.7 times as much". Each is built so that a service's own change counts and a change it only
passes on does not:

- `latency`: exclusive time of the service's own (non-client) operations, the median over its
  operations, weighted by calls; a caller waiting on a slow callee has no more exclusive time.
- `network`: the gap of calls on the service's edges (client span minus the callee's span): the
  median over the edges into it or over every edge it is on, whichever is larger; a slow link
  into X shows on all edges into X (a delay on X's pod, on all of its edges), while each caller
  has only the one edge to X among others.
- `errors`: errors that *start* at the service, per call: failed spans with no failed child, and
  error logs of the service in a trace where none of its callees failed.
- `templates`: the log templates of the service (own, not relayed) whose rate rose most.
- `metrics`: the service's pod metrics whose level moved most against their spread before.
- `cut`: where requests were cut short: an operation that now makes fewer calls, blamed on the
  callee it now stops after (when that callee changed too) or else on the operation's service
  (it returned early). Faults that remove work rather than add errors show here.
- `load`: requests per second entering at the service (its root spans), beyond a dead zone of
  x1.35: a surge of traffic is the entry's change, and the load behind it is passed on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from detector.events import LEVEL_ERROR
from detector.rca.tree import trace_edges

# Floors that keep tiny numbers from making huge ratios.
SELF_FLOOR_MS = 0.5
ERROR_FLOOR = 0.002
MIN_CALLS = 3
CUT_DROP = 0.2  # calls per span down by a fifth or more
LAST_CALL_SHIFT = 0.2  # share of spans whose last call went to one callee, up by this
LOAD_DEAD_ZONE = 0.3  # traffic varies by a third without anyone being at fault
CALLEE_CHANGED = 0.1  # |log ratio| of that callee's own exclusive time


@dataclass(slots=True)
class Side:
    """One side of the comparison: derived spans, logs and metrics, and how long it lasted."""

    spans: pl.DataFrame
    logs: pl.DataFrame
    metrics: pl.DataFrame
    seconds: float


@dataclass(slots=True)
class ServiceChange:
    """The signals of one service (log ratios; 0.0 when there is no evidence either way)."""

    service: str
    latency: float = 0.0
    network: float = 0.0
    errors: float = 0.0
    templates: float = 0.0
    metrics: float = 0.0
    cut: float = 0.0  # calls per span lost, where requests were cut short (positive)
    load: float = 0.0  # requests per second entering at this service (its root spans)
    detail: dict[str, object] = field(default_factory=dict)


def contrast(before: Side, after: Side, services: list[str]) -> dict[str, ServiceChange]:
    """Per-service signals of `after` against `before`."""
    out = {s: ServiceChange(s) for s in services}
    _latency(before.spans, after.spans, out)
    _network(before.spans, after.spans, out)
    _errors(before, after, out)
    _metrics(before.metrics, after.metrics, out)
    _cuts(before.spans, after.spans, out)
    _load(before, after, out)
    return out


def _lr(a: pl.Expr, b: pl.Expr, floor: float) -> pl.Expr:
    return ((a + floor) / (b + floor)).log()


def _two_sides(b: pl.DataFrame, a: pl.DataFrame, keys: list[str], aggs: list[pl.Expr]
               ) -> pl.DataFrame:
    """Aggregates per key on both sides, joined (suffix `_b` before, `_a` after)."""
    gb = b.group_by(keys).agg(aggs)
    ga = a.group_by(keys).agg(aggs)
    return ga.join(gb, on=keys, how="inner", suffix="_b")


def _latency(b: pl.DataFrame, a: pl.DataFrame, out: dict[str, ServiceChange]) -> None:
    own = [pl.col("self_ms").mean().alias("m"), pl.len().alias("n")]
    j = _two_sides(b.filter(~pl.col("client")), a.filter(~pl.col("client")), ["service", "name"],
                   own).filter((pl.col("n") >= MIN_CALLS) & (pl.col("n_b") >= MIN_CALLS))
    j = j.with_columns(r=_lr(pl.col("m"), pl.col("m_b"), SELF_FLOOR_MS),
                       w=(pl.col("n").cast(pl.Float64) * pl.col("n_b")).sqrt())
    for (svc,), g in j.group_by(["service"]):
        if svc in out:
            r, w = g["r"].to_numpy(), g["w"].to_numpy()
            out[str(svc)].latency = _weighted_median(r, w)
            top = int(np.argmax(r))
            out[str(svc)].detail["slowest_operation"] = {
                "name": g["name"][top], "self_ms_before": round(float(g["m_b"][top]), 3),
                "self_ms_after": round(float(g["m"][top]), 3)}


def _network(b: pl.DataFrame, a: pl.DataFrame, out: dict[str, ServiceChange]) -> None:
    gap = [pl.col("self_ms").mean().alias("m"), pl.len().alias("n")]
    cb = b.filter(pl.col("client") & pl.col("callee").is_not_null())
    ca = a.filter(pl.col("client") & pl.col("callee").is_not_null())
    j = _two_sides(cb, ca, ["service", "callee"], gap).filter(
        (pl.col("n") >= MIN_CALLS) & (pl.col("n_b") >= MIN_CALLS))
    if j.height == 0:
        return
    j = j.with_columns(r=_lr(pl.col("m"), pl.col("m_b"), SELF_FLOOR_MS))
    ends = pl.concat([j.select(pl.col("service").alias("end"), "r", "service", "callee",
                               incoming=pl.lit(False)),
                      j.select(pl.col("callee").alias("end"), "r", "service", "callee",
                               incoming=pl.lit(True))])
    for (svc,), g in ends.group_by(["end"]):
        if svc in out:
            into = g.filter(pl.col("incoming"))["r"]
            out[str(svc)].network = max(float(g["r"].median()),  # type: ignore[arg-type]
                                        float(into.median()) if len(into) else -math.inf)  # type: ignore[arg-type]
            top = int(np.argmax(g["r"].to_numpy()))
            out[str(svc)].detail["slowest_edge"] = f"{g['service'][top]} -> {g['callee'][top]}"


def _origins(side: Side) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(errors that start at a service, activity) per service, counted on one side."""
    sp, lg = side.spans, side.logs
    # A failed call whose callee left no failed span of its own (refused, timed out, never
    # answered) is the callee's error: the client span's callee, or the callee the record names.
    blame = (pl.when(pl.col("client") & pl.col("callee").is_not_null()).then(pl.col("callee"))
             .otherwise(pl.coalesce("callee_hint", "service")))
    span_err = sp.filter(pl.col("error") & ~pl.col("child_error")).group_by(
        blame.alias("service")).len()
    failed = pl.concat([
        sp.filter(pl.col("error")).select("trace", "service"),
        lg.filter(pl.col("level") >= LEVEL_ERROR).select("trace", "service"),
    ]).filter(pl.col("trace").is_not_null()).unique()
    err_logs = lg.filter(pl.col("level") >= LEVEL_ERROR)
    if sp.height:
        edges = trace_edges(sp)
        relayed = edges.join(failed.rename({"service": "callee"}), on=["trace", "callee"]).select(
            "trace", pl.col("caller").alias("service")).unique()
        own_logs = err_logs.join(relayed, on=["trace", "service"], how="anti")
    else:
        # No span tree: the first service of a trace to log an error is where it started.
        first = err_logs.filter(pl.col("trace").is_not_null()).sort("t").group_by("trace").agg(
            pl.col("service").first())
        own_logs = pl.concat([
            err_logs.filter(pl.col("trace").is_null()),
            err_logs.join(first, on=["trace", "service"], how="semi"),
        ])
    # A span that failed and also logged counts once: error logs of a span already counted go.
    own_logs = own_logs.join(sp.filter(pl.col("error")).select("trace", "span"),
                             on=["trace", "span"], how="anti")
    origins = pl.concat([span_err, own_logs.group_by("service").len()]).group_by("service").agg(
        pl.col("len").sum().alias("errors"))
    activity = pl.concat([sp.group_by("service").len(),
                          lg.filter(pl.col("span").is_null() | ~pl.col("span").is_in(
                              sp["span"].implode())).group_by("service").len()]
                         ).group_by("service").agg(pl.col("len").sum().alias("calls"))
    return origins.join(activity, on="service", how="right").fill_null(0), own_logs


def _errors(before: Side, after: Side, out: dict[str, ServiceChange]) -> None:
    ob, lb = _origins(before)
    oa, la = _origins(after)
    j = oa.join(ob, on="service", how="left", suffix="_b").fill_null(0)
    for row in j.iter_rows(named=True):
        svc = row["service"]
        if svc not in out or row["errors"] < MIN_CALLS:
            continue
        ra = row["errors"] / max(row["calls"], 1)
        rb = row["errors_b"] / max(row["calls_b"], 1)
        out[svc].errors = float(np.log((ra + ERROR_FLOOR) / (rb + ERROR_FLOOR)))
        out[svc].detail["error_rate"] = {"before": round(rb, 4), "after": round(ra, 4)}
    # Own log templates whose rate rose (per second, so both sides' lengths cancel out).
    ta = la.group_by(["service", "template"]).len()
    tb = lb.group_by(["service", "template"]).len()
    tj = ta.join(tb, on=["service", "template"], how="left", suffix="_b").fill_null(0).filter(
        pl.col("len") >= MIN_CALLS)
    floor = 1.0 / max(before.seconds, 1.0)
    tj = tj.with_columns(r=_lr(pl.col("len") / max(after.seconds, 1.0),
                               pl.col("len_b").cast(pl.Float64) / max(before.seconds, 1.0), floor))
    for (svc,), g in tj.group_by(["service"]):
        if svc in out:
            top = int(np.argmax(g["r"].to_numpy()))
            out[str(svc)].templates = float(g["r"][top])
            out[str(svc)].detail["new_error_template"] = int(g["template"][top])


def _metrics(b: pl.DataFrame, a: pl.DataFrame, out: dict[str, ServiceChange]) -> None:
    if a.height == 0 or b.height == 0:
        return
    keys = ["service", "pod", "metric"]
    gb = b.group_by(keys).agg(mb=pl.col("value").mean(), sb=pl.col("value").std().fill_null(0.0))
    ga = a.group_by(keys).agg(ma=pl.col("value").mean())
    j = ga.join(gb, on=keys, how="inner", nulls_equal=True).with_columns(
        z=((pl.col("ma") - pl.col("mb")).abs()
           / (pl.col("sb") + 0.1 * pl.col("mb").abs() + 1e-9)).log1p())
    # A move that every service's copy of a metric shares (traffic, the node) is nobody's own:
    # where three or more services have the metric, the median move across them is taken off.
    j = j.with_columns(
        shared=pl.when(pl.col("service").n_unique().over("metric") >= 3)
        .then(pl.col("z").median().over("metric")).otherwise(0.0)
    ).with_columns(z=(pl.col("z") - pl.col("shared")).clip(lower_bound=0.0))
    for (svc,), g in j.group_by(["service"]):
        if svc in out:
            z = np.sort(g["z"].to_numpy())[::-1]
            out[str(svc)].metrics = float(z[:3].mean())
            top = g.sort("z", descending=True).row(0, named=True)
            out[str(svc)].detail["metric"] = {
                "name": top["metric"], "pod": top["pod"], "before": round(top["mb"], 6),
                "after": round(top["ma"], 6)}


def _parents(sp: pl.DataFrame) -> pl.DataFrame:
    """Each own (non-client) span with its number of children and the service its last child
    called (a client child's callee, or the child's own service)."""
    kids = sp.filter(pl.col("parent") != "").sort("t").group_by(["trace", "parent"]).agg(
        last=pl.col("callee").fill_null(pl.col("service")).last(), n=pl.len())
    return sp.filter(~pl.col("client")).select("trace", "span", "service", "name").join(
        kids.rename({"parent": "span"}), on=["trace", "span"], how="left").with_columns(
        pl.col("n").fill_null(0))


def _last_share(p: pl.DataFrame, svc: str, name: str) -> pl.DataFrame:
    """Share of one operation's spans whose last call went to each service."""
    return p.filter((pl.col("service") == svc) & (pl.col("name") == name)
                    & pl.col("last").is_not_null())["last"].value_counts(normalize=True)


def _cuts(b: pl.DataFrame, a: pl.DataFrame, out: dict[str, ServiceChange]) -> None:
    """Requests cut short: an operation that makes fewer calls than it did stopped either
    because a callee failed (then it now stops after calling that callee, more often than it
    did, and the callee's own behaviour changed) or because the operation itself returned early.
    The log ratio of the calls made goes to whichever it was."""
    if b.height == 0 or a.height == 0:
        return
    pb, pa = _parents(b), _parents(a)
    agg = [pl.col("n").mean().alias("m"), pl.len().alias("k")]
    j = _two_sides(pb, pa, ["service", "name"], agg).filter(
        (pl.col("k") >= 5) & (pl.col("k_b") >= 5) & (pl.col("m_b") > 0))
    j = j.with_columns(d=_lr(pl.col("m"), pl.col("m_b"), 0.1)).filter(pl.col("d") < -CUT_DROP)
    for row in j.iter_rows(named=True):
        svc, name = row["service"], row["name"]
        before_share = _last_share(pb, svc, name)
        shift = _last_share(pa, svc, name).join(before_share, on="last", how="left", suffix="_b"
                                                ).fill_null(0.0).with_columns(
            s=pl.col("proportion") - pl.col("proportion_b")).sort(["s", "last"], descending=[True, False])
        who = svc
        if shift.height and shift["s"][0] >= LAST_CALL_SHIFT:
            callee = str(shift["last"][0])
            if callee in out and abs(out[callee].latency) >= CALLEE_CHANGED:
                who = callee
        if who in out and -row["d"] > out[who].cut:
            out[who].cut = float(-row["d"])
            out[who].detail["cut_short"] = f"{svc} {name}: calls per span x{math.exp(row['d']):.2f}"


def _load(before: Side, after: Side, out: dict[str, ServiceChange]) -> None:
    """Traffic entering at each service (its root spans, per second): a surge of requests is
    the entry service's change; the load it brings on everything behind it is passed on."""
    if before.seconds <= 0 or after.seconds <= 0:
        return
    rb = before.spans.filter(pl.col("parent") == "").group_by("service").len()
    ra = after.spans.filter(pl.col("parent") == "").group_by("service").len()
    for svc, n_a, n_b in ra.join(rb, on="service", how="inner", suffix="_b").iter_rows():
        if svc in out and n_a >= MIN_CALLS and n_b >= MIN_CALLS:
            r = float(np.log((n_a / after.seconds) / (n_b / before.seconds)))
            out[svc].load = max(r - LOAD_DEAD_ZONE, 0.0)
            out[svc].detail["requests_per_second"] = {
                "before": round(n_b / before.seconds, 3), "after": round(n_a / after.seconds, 3)}


def _weighted_median(x: np.ndarray, w: np.ndarray) -> float:
    """The value at half the total weight.

    >>> _weighted_median(np.array([0.0, 1.0, 5.0]), np.array([1.0, 1.0, 3.0]))
    5.0
    """
    order = np.argsort(x)
    cw = np.cumsum(w[order])
    return float(x[order][np.searchsorted(cw, cw[-1] / 2.0)])
