"""Benchmarks that print figures (`vigil bench ...`), one file each, and the local servers they
start (`servers`). Stages never import it; nothing here asserts a speed."""
