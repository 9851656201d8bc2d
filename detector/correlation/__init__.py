"""Request correlation: events flagged anomalous (`flags`), gathered per request id (`requests`,
on `idtable` and `recent_ids`), and each anomalous request's call chain and root cause (`chains`)."""
