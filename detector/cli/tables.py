"""Tables the commands print."""
from __future__ import annotations

from pathlib import Path

from rich.table import Table

from detector.cli.common import out


def print_replay_summary(stats: dict[str, object], incidents: list[dict[str, object]], target: Path,
                         title: str = "Replay summary") -> None:
    t = Table(title=title, show_header=False)
    for key in ("lines", "events", "windows_closed", "anomalies", "incidents_opened",
                "dead_letters_total", "seconds"):
        t.add_row(key.replace("_", " "), str(stats[key]))
    dead = stats["dead_letters"]
    assert isinstance(dead, dict)
    for reason, n in dead.items():
        if n:
            t.add_row(f"  dead: {reason}", str(n))
    corr = stats.get("correlation") or {}
    assert isinstance(corr, dict)
    for key, label in (("requests_closed", "requests"), ("anomalous_requests", "  anomalous"),
                       ("evicted_requests", "  evicted"), ("late_events", "  late events"),
                       ("dropped_events", "  over the cap"), ("no_request_id", "  no request id")):
        if key in corr and (corr[key] or key in ("requests_closed", "anomalous_requests")):
            t.add_row(label, str(corr[key]))
    out.print(t)
    if incidents:
        it = Table(title="Incidents")
        for col in ("id", "root cause", "status", "opened (UTC)", "anomalies", "services",
                    "top explanation"):
            it.add_column(col)
        from detector.simulate.fleet import rfc3339

        for inc in incidents:
            ranked = inc.get("root_cause") or []
            assert isinstance(ranked, list)
            cause = str(inc["service"])
            if ranked:
                top = ranked[0]
                ev = top["evidence"]
                if "requests" in ev:  # the log ranking (detector.incidents.rootcause)
                    cause = (f"{top['service']} ({top['confidence']:.0%}; {ev['requests']} "
                             f"requests{', silent' if ev['silent_requests'] else ''})")
                else:  # the span analysis (detector.rca)
                    from detector.rca.report import why

                    cause = f"{top['service']} ({top['confidence']:.0%}; {why(top)})"
            services = inc.get("services") or {}
            assert isinstance(services, dict)
            it.add_row(str(inc["id"]), cause, str(inc["status"]),
                       rfc3339(float(inc["opened_at"])), str(inc["anomaly_count"]),  # type: ignore[arg-type]
                       ", ".join(sorted(services)), str(inc["top_explanation"]))
        out.print(it)
    else:
        out.print("No incidents.")
    out.print(f"Outputs in {target}/ (anomalies.jsonl, incidents.jsonl, dead_letter.jsonl)")


def print_metrics(title: str, rows: list[tuple[str, object]]) -> None:
    t = Table(title=title)
    for col in ("set", "precision", "recall", "F1", "TP", "FP", "FN"):
        t.add_column(col)
    for name, m in rows:
        if m is None:
            continue
        d = m.as_dict()  # type: ignore[attr-defined]
        t.add_row(name, f"{d['precision']:.3f}", f"{d['recall']:.3f}", f"{d['f1']:.3f}",
                  str(d["tp"]), str(d["fp"]), str(d["fn"]))
    out.print(t)
