"""Incidents: anomalies grouped by root cause (`tracker`), the ranking of candidate services
(`rootcause`), and incidents as remediation triggers (`triggers`)."""
