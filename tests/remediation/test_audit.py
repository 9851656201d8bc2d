"""The audit database: an old one is migrated to claim states in place."""

from __future__ import annotations

import json
from pathlib import Path


def test_an_audit_database_from_before_claim_states_is_migrated(tmp_path: Path) -> None:
    """Claims of an older database had no state: those without an outcome row become open
    (interrupted) claims, with the trigger taken from the episode's audit rows."""
    import sqlite3

    from remediation.audit import AuditStore

    db = tmp_path / "old.db"
    trig = json.dumps({"source": "alertmanager", "fingerprint": "f", "status": "firing",
                       "starts_at": 1.0, "labels": {"service": "cart"}})
    with sqlite3.connect(db) as old:
        old.executescript("""
            CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL,
                episode TEXT NOT NULL, fingerprint TEXT NOT NULL, source TEXT NOT NULL, rule TEXT,
                rung INTEGER, rung_name TEXT, hook TEXT, target TEXT, params TEXT,
                verdict TEXT NOT NULL, guard TEXT, detail TEXT, output TEXT, duration_s REAL,
                trigger TEXT);
            CREATE TABLE claims (episode TEXT NOT NULL, rule TEXT NOT NULL, rung INTEGER NOT NULL,
                ts REAL NOT NULL, PRIMARY KEY (episode, rule, rung));
        """)
        old.execute("INSERT INTO claims VALUES ('done@1.000', 'r', 0, 5.0), "
                    "('lost@1.000', 'r', 1, 6.0)")
        old.execute("INSERT INTO audit (ts, episode, fingerprint, source, rule, rung, verdict, "
                    "trigger) VALUES (5, 'done@1.000', 'done', 'alertmanager', 'r', 0, 'acted', ?),"
                    " (6, 'lost@1.000', 'lost', 'alertmanager', 'r', 0, 'not_better', ?)",
                    (trig, trig))
    store = AuditStore(db)
    (claim,) = store.interrupted_claims()
    assert (claim.episode, claim.rule, claim.rung, claim.dry_run) == ("lost@1.000", "r", 1, False)
    assert claim.trigger is not None and claim.trigger["labels"] == {"service": "cart"}
    assert store.claim("new@1.000", "r", 0)  # the new columns work on the old table
    store.close()
