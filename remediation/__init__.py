"""Remediation: policy, guardrails, hooks, verification and audit (floor 2).

Its input is a `Trigger` (from the detector's incidents, or Alertmanager's alerts through
`alertmanager/`, the webhook receiver); it imports neither `detector` nor `models`.
"""
