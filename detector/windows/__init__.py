"""Per-service windows of event time (`aggregate`), the judge of wrong clocks (`clock`) and the
quantile sketch (`sketch`)."""
