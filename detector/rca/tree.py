"""The span tree of a capture: each span's exclusive time, its callee, and where errors start.

*Exclusive* (self) time is a span's duration minus the time covered by its children (their
intervals merged, so parallel calls are not counted twice). A *client* span is a service's
outgoing call: its kind says so (CLIENT / PRODUCER), or, where spans carry no kind, its operation
usually has the shape of an RPC: one child, in another service, under the same operation name
(as gRPC and OpenTelemetry's RPC conventions name both ends). A client span's exclusive time is
the gap between the caller's view of the call and the callee's own span: network and queueing.

A span *relays* an error when one of its children failed too; it is an error's *origin* when
none did.
"""

from __future__ import annotations

import polars as pl

_CLIENT_KINDS = ("CLIENT", "PRODUCER")


def derive(spans: pl.DataFrame) -> pl.DataFrame:
    """`spans` (capture schema) with `self_ms`, `children`, `child_error`, `client`, `callee`.

    >>> df = pl.DataFrame({"t": [0.0, 0.001, 0.002], "service": ["web", "web", "db"],
    ...     "pod": [None] * 3, "trace": ["t"] * 3, "span": ["a", "b", "c"],
    ...     "parent": ["", "a", "b"], "name": ["GET", "db/Query", "db/Query"],
    ...     "kind": [None] * 3, "dur_ms": [10.0, 6.0, 4.0], "error": [False, True, True],
    ...     "callee_hint": [None] * 3})
    >>> out = derive(df)
    >>> out["self_ms"].to_list(), out["client"].to_list(), out["callee"].to_list()
    ([4.0, 2.0, 4.0], [False, True, False], [None, 'db', None])
    >>> out["child_error"].to_list()
    [True, True, False]
    """
    if spans.height == 0:
        return spans.with_columns(
            self_ms=pl.lit(None, dtype=pl.Float64), children=pl.lit(0, dtype=pl.UInt32),
            child_error=pl.lit(False), client=pl.lit(False), callee=pl.lit(None, dtype=pl.String))
    kids = (
        spans.lazy()
        .filter(pl.col("parent") != "")
        .select(pl.col("trace"), pl.col("parent").alias("span"), pl.col("t").alias("s"),
                (pl.col("t") + pl.col("dur_ms") / 1e3).alias("e"), pl.col("error"),
                pl.col("service").alias("child_service"), pl.col("name").alias("child_name"))
        .sort(["trace", "span", "s"])
        .with_columns(prev=pl.col("e").cum_max().shift(1).over(["trace", "span"]))
        .with_columns(cover=(pl.col("e") - pl.max_horizontal("s", pl.col("prev").fill_null(
            pl.col("s")))).clip(lower_bound=0.0))
        .group_by(["trace", "span"])
        .agg(covered_ms=pl.col("cover").sum() * 1e3, children=pl.len(),
             child_error=pl.col("error").any(), child_service=pl.col("child_service").mode().first(),
             child_name=pl.col("child_name").first())
    )
    df = (
        spans.lazy().join(kids, on=["trace", "span"], how="left", maintain_order="left")
        .with_columns(
            self_ms=(pl.col("dur_ms") - pl.col("covered_ms").fill_null(0.0)).clip(lower_bound=0.0),
            children=pl.col("children").fill_null(0),
            child_error=pl.col("child_error").fill_null(False),
            remote=pl.col("child_service").is_not_null()
            & (pl.col("child_service") != pl.col("service")),
        )
        .with_columns(
            # The shape of an RPC: one child, in another service, under the same operation name.
            # (One name may carry a prefix the other lacks: "/pkg.Svc/M", "grpc.pkg.Svc/M".)
            rpc=pl.col("remote") & (pl.col("children") == 1) & (pl.col("name") != "")
            & (pl.col("child_name") != "")
            & (pl.col("child_name").str.ends_with(pl.col("name"))
               | pl.col("name").str.ends_with(pl.col("child_name"))),
        )
        .with_columns(
            op_rpc=pl.col("rpc").mean().over(["service", "name"]),
            op_callee=pl.col("child_service").filter(pl.col("remote")).mode().first()
            .over(["service", "name"]),
        )
        .with_columns(
            client=pl.when(pl.col("kind").is_not_null())
            .then(pl.col("kind").is_in(_CLIENT_KINDS))
            .otherwise(pl.col("op_rpc") > 0.5),
        )
        .with_columns(
            callee=pl.when(pl.col("client"))
            .then(pl.coalesce("callee_hint", pl.when(pl.col("remote")).then(pl.col("child_service")),
                              "op_callee"))
        )
        .drop(["covered_ms", "child_service", "child_name", "remote", "rpc", "op_rpc",
               "op_callee"])
    )
    return df.collect()


def trace_edges(spans: pl.DataFrame) -> pl.DataFrame:
    """Distinct (trace, caller, callee) service pairs of derived spans: a client span's callee, or
    a span whose parent is in another service.

    >>> df = derive(pl.DataFrame({"t": [0.0, 0.001], "service": ["web", "db"], "pod": [None] * 2,
    ...     "trace": ["t", "t"], "span": ["a", "b"], "parent": ["", "a"], "name": ["GET", "Q"],
    ...     "kind": [None] * 2, "dur_ms": [5.0, 2.0], "error": [False] * 2,
    ...     "callee_hint": [None] * 2}))
    >>> trace_edges(df).rows()
    [('t', 'web', 'db')]
    """
    client = spans.filter(pl.col("client") & pl.col("callee").is_not_null()).select(
        "trace", pl.col("service").alias("caller"), "callee")
    parents = spans.select("trace", "span", pl.col("service").alias("caller"))
    nested = spans.filter(pl.col("parent") != "").select(
        "trace", pl.col("parent").alias("span"), pl.col("service").alias("callee")).join(
        parents, on=["trace", "span"], how="inner").filter(
        pl.col("caller") != pl.col("callee")).select("trace", "caller", "callee")
    return pl.concat([client, nested]).unique().sort(["trace", "caller", "callee"])
