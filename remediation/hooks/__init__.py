"""Remediation hooks: the protocol, the registry, and the built-ins (http, command, kubernetes, log)."""
