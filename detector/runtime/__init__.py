"""What runs the stages: `replay` (files), `follow` (growing files, until stopped), `consume` (the
Kafka consumer group), `watch` (Prometheus), with checkpoints, probes and Vigil's own telemetry.
Stages never import it."""
