"""The `vigil` command line. Thin: each command reads its options and calls a module; the
commands live by group (`run`, `remediation`, `bench`, `eval`) and every heavy import happens
inside the command that needs it, so `vigil --help` starts at once.

The whole command list is here, in one place:
"""

from __future__ import annotations

import typer

from detector.cli import bench, demo, eval, rca, remediation, run

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Vigil: log and metrics anomaly detection with root cause and guarded "
                       "remediation.")
config_app = typer.Typer(no_args_is_help=True, help="Inspect the configuration.")
policy_app = typer.Typer(no_args_is_help=True, help="Check and try remediation policies.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks that print figures.")
eval_app = typer.Typer(no_args_is_help=True, help="Evaluate detection on labelled data.")
app.add_typer(config_app, name="config")
app.add_typer(policy_app, name="policy")
app.add_typer(bench_app, name="bench")
app.add_typer(eval_app, name="eval")

# Running the detector
app.command("replay")(run.replay)
app.command("follow")(run.follow)
app.command("consume")(run.consume)
app.command("metrics")(run.metrics_cmd)
app.command("simulate")(run.simulate)
app.command("dead-letters")(run.dead_letters)
app.command("rca")(rca.rca_cmd)
app.command("demo")(demo.demo_cmd)
config_app.command("show")(run.config_show)
config_app.command("reference")(run.config_reference)
# Remediation
app.command("serve")(remediation.serve_cmd)
app.command("remediate")(remediation.remediate_cmd)
app.command("audit")(remediation.audit_cmd)
policy_app.command("check")(remediation.policy_check)
policy_app.command("test")(remediation.policy_test)
# Measuring
for _name, _fn in (("pipeline", bench.bench_pipeline_cmd), ("detection", bench.bench_detection_cmd),
                   ("models", bench.bench_models_cmd), ("correlation", bench.bench_correlation_cmd),
                   ("kafka", bench.bench_kafka_cmd), ("webhook", bench.bench_webhook_cmd),
                   ("prometheus", bench.bench_prometheus_cmd),
                   ("remediation", bench.bench_remediation_cmd),
                   ("templates", bench.bench_templates_cmd),
                   ("formats", bench.bench_formats_cmd), ("analyze", bench.bench_analyze_cmd),
                   ("notebooks", bench.bench_notebooks_cmd), ("fleet", bench.bench_fleet_cmd)):
    bench_app.command(_name)(_fn)
eval_app.command("nab")(eval.eval_nab)
eval_app.command("sessions")(eval.eval_sessions_cmd)
eval_app.command("lines")(eval.eval_lines_cmd)
eval_app.command("rootcause")(eval.eval_rootcause)
eval_app.command("rca")(rca.eval_rca_cmd)


def main() -> None:
    app()


__all__ = ["app", "main"]
