"""Remediation: policy, guardrails, hooks, verification and audit (floor 2).

Its input is a `Trigger`; it imports neither `detector` nor `models`. Built in a later issue; the
package exists now so the layering is fixed from the start.
"""
