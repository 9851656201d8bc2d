"""One configuration tree for every command: unknown keys refused at every level with the dotted
path named, environment overrides for all of it (serve included)."""

from __future__ import annotations

from pathlib import Path

import pytest

from detector.config import ConfigError, load_config
from tests.support import ROOT


@pytest.mark.parametrize(("yaml_text", "where"), [
    ("window: {secnds: 30}", "window.secnds"),
    ("parsing: {fields: {servce: [app]}}", "parsing.fields.servce"),
    ("scoring: {features: {rate: {direction: up, flor: 1}}}", "scoring.features.rate.flor"),
    ("scoring: {features: {latncy_p99: {direction: up}}}", "unknown feature(s) latncy_p99"),
    ("kafka: {reconnect: {base: 1}}", "kafka.reconnect.base"),
    ("prometheus: {retries: 3}", "prometheus.retries"),
    ("prometheus: {queries: [{name: q, query: up, stp_seconds: 5}]}",
     "prometheus.queries.0.stp_seconds"),
    ("serve: {tokn_file: /x}", "serve.tokn_file"),
    ("serve: {engine: {dry_rn: false}}", "serve.engine.dry_rn"),
    ("nonsense: 1", "nonsense"),
])
def test_unknown_keys_are_errors_that_name_the_dotted_path(yaml_text: str, where: str,
                                                            tmp_path: Path) -> None:
    f = tmp_path / "vigil.yaml"
    f.write_text(yaml_text + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(f)
    assert where in str(info.value)


def test_the_environment_overrides_every_section_serve_included(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "vigil.yaml"
    f.write_text("window: {seconds: 30}\nserve: {port: 9000, engine: {dry_run: true}}\n")
    monkeypatch.setenv("VIGIL_WINDOW__SECONDS", "5")
    monkeypatch.setenv("VIGIL_SERVE__PORT", "9200")
    monkeypatch.setenv("VIGIL_SERVE__BEARER_TOKEN", "a-token-of-at-least-16")
    monkeypatch.setenv("VIGIL_PROMETHEUS__RETRY__ATTEMPTS", "1")
    cfg = load_config(f)
    assert cfg.window.seconds == 5 and cfg.serve.port == 9200
    assert cfg.serve.token() == "a-token-of-at-least-16" and cfg.prometheus.retry.attempts == 1
    assert "a-token-of-at-least-16" not in repr(cfg) + cfg.serve.for_engine()


def test_an_unknown_key_in_the_environment_is_an_error_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_WINDOW__SECNDS", "5")
    with pytest.raises(ConfigError, match=r"window\.secnds"):
        load_config()


def test_the_configuration_reference_in_docs_is_current() -> None:
    """docs/configuration.md is generated from the model (`vigil config reference`); every key
    is there with a description."""
    from detector.cli.config_reference import reference

    text = reference()
    doc = ROOT / "docs" / "configuration.md"
    assert doc.read_text() == text, "run `vigil config reference > docs/configuration.md`"
    assert "|  |" not in text  # every key says what it does
    for key in ("`secnds`",):
        assert key not in text
    for section in ("## `window`", "## `serve`", "## `serve.engine`", "## `prometheus.retry`",
                    "## `prometheus.queries[]`", "## `kafka.reconnect`"):
        assert section in text


def test_the_kafka_client_is_chosen_in_config_and_both_get_the_same_connection(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from detector.config import VigilConfig

    assert VigilConfig().kafka.client == "confluent"  # the default: the faster
    monkeypatch.setenv("VIGIL_KAFKA__CLIENT", "kafka-python")
    assert VigilConfig().kafka.client == "kafka-python"
    monkeypatch.setenv("VIGIL_KAFKA__CLIENT", "confluent")
    monkeypatch.setenv("VIGIL_KAFKA__BOOTSTRAP_SERVERS", '["a:9092","b:9092"]')
    monkeypatch.setenv("VIGIL_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("VIGIL_KAFKA__SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("VIGIL_KAFKA__SASL_PLAIN_USERNAME", "u")
    monkeypatch.setenv("VIGIL_KAFKA__SASL_PLAIN_PASSWORD", "p")
    monkeypatch.setenv("VIGIL_KAFKA__SSL_CAFILE", "/ca.pem")
    k = VigilConfig().kafka
    assert k.client == "confluent"
    assert k.confluent_options() == {
        "bootstrap.servers": "a:9092,b:9092", "client.id": "vigil",
        "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "u", "sasl.password": "p", "ssl.ca.location": "/ca.pem"}
    monkeypatch.setenv("VIGIL_KAFKA__CLIENT", "librdkafka")
    with pytest.raises(ConfigError):
        load_config(None)
