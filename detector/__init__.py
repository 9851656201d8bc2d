"""Vigil's detector (floor 3): sources, decoding, templates, windows, scoring, incidents, CLI.

May import `models` and `remediation`; neither imports it.
"""
