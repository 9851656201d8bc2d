"""Root cause of a capture: spans, logs and metrics before and after an onset, compared per
service and attributed through the call graph."""
