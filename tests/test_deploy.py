"""`deploy/`: the Dockerfile and the Kubernetes manifests, checked without a Docker engine or a
cluster (neither runs here). Every object is deserialized into the official `kubernetes` client's
models, and every key is checked against the model's `attribute_map`, recursively, so a typo or
a field in the wrong place fails; every container runs a real `vigil` command whose options
click accepts as written; its probes name paths and ports the code really serves (the real side
server and the real `vigil serve` app answer them); the ConfigMaps load with Vigil's own loaders;
every pod is non-root with a read-only root; the grace periods and probe windows cover what the
code waits for."""

from __future__ import annotations

import inspect
import ipaddress
import json
import re
import threading
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

kubernetes = pytest.importorskip(
    "kubernetes", reason="the official kubernetes client validates the manifests: "
    "pip install kubernetes (it is in the dev extra)")
from kubernetes import client as k8s  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
MANIFESTS = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
NAMESPACE = "vigil"

# The kinds the manifests may hold, by (apiVersion, kind), and their model in the client.
KINDS = {
    ("v1", "Namespace"): "V1Namespace",
    ("v1", "ConfigMap"): "V1ConfigMap",
    ("v1", "Secret"): "V1Secret",
    ("v1", "Service"): "V1Service",
    ("v1", "PersistentVolumeClaim"): "V1PersistentVolumeClaim",
    ("apps/v1", "Deployment"): "V1Deployment",
    ("policy/v1", "PodDisruptionBudget"): "V1PodDisruptionBudget",
}
# The long-running commands, and the server each one's probes talk to.
ROLES = {"consume": "side", "stages": "side", "remediate": "side", "metrics": "side",
         "serve": "serve"}
SIDE_PATHS = {"/healthz", "/readyz", "/metrics"}  # detector/runtime/probes.py


def _objects() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                found.append((path.name, doc))
    return found


OBJECTS = _objects()


def _named(kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for _, o in OBJECTS if o["kind"] == kind}


def _deployments() -> dict[str, dict[str, Any]]:
    """The Deployments by the vigil command their container runs (`consume`: `vigil consume
    --role partitions`, the whole pipeline per partition; `stages`: its other roles)."""
    out = {}
    for d in _named("Deployment").values():
        (c,) = d["spec"]["template"]["spec"]["containers"]
        args = c["args"]
        whole = args[0] == "consume" and "--role" in args \
            and args[args.index("--role") + 1] == "partitions"
        out["stages" if args[0] == "consume" and not whole else args[0]] = d
    return out


# ---- the client's models, strictly -------------------------------------------------------

# 'List[X]', 'Dict[str, X]' and 'Optional[X]'; older clients write 'list[X]' and 'dict(str, X)'
_WRAPPED = re.compile(r"^(Optional|List|Dict|list)\[(.*)\]$|^(dict)\((.*)\)$")


def unknown_fields(data: Any, klass: str, where: str = "") -> list[str]:
    """Every key of `data` that the model `klass` (an openapi type of the kubernetes client:
    'V1Deployment', 'List[V1Container]', 'Dict[str, str]', 'int', 'object', ...) does not
    have, and every value of the wrong shape, as 'path: problem'."""
    m = _WRAPPED.match(klass)
    if m:
        outer, inner = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        if outer == "Optional":
            return [] if data is None else unknown_fields(data, inner, where)
        if outer in ("List", "list"):
            if not isinstance(data, list):
                return [f"{where}: a list, not {type(data).__name__}"]
            return [p for i, v in enumerate(data) for p in unknown_fields(v, inner, f"{where}[{i}]")]
        value_type = inner.split(",", 1)[1].strip()
        if not isinstance(data, dict):
            return [f"{where}: a mapping, not {type(data).__name__}"]
        return [p for k, v in data.items() for p in unknown_fields(v, value_type, f"{where}.{k}")]
    if klass == "object":  # IntOrString and the like
        return []
    natives: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "float": (int, float),
                                            "bool": (bool,), "bytes": (str,), "datetime": (str,)}
    if klass in natives:
        ok = isinstance(data, natives[klass]) and not (klass in ("int", "float")
                                                      and isinstance(data, bool))
        return [] if ok else [f"{where}: {klass}, not {type(data).__name__} {data!r}"]
    model = getattr(k8s, klass)
    if not isinstance(data, dict):
        return [f"{where}: a {klass} mapping, not {type(data).__name__}"]
    by_json = {json_name: attr for attr, json_name in model.attribute_map.items()}
    problems = []
    for key, value in data.items():
        if key not in by_json:
            problems.append(f"{where}.{key}: not a field of {klass}")
        else:
            problems += unknown_fields(value, model.openapi_types[by_json[key]], f"{where}.{key}")
    return problems


def _deserialize(obj: dict[str, Any]) -> Any:
    model = KINDS[(obj["apiVersion"], obj["kind"])]
    return k8s.ApiClient()._ApiClient__deserialize(obj, model)  # type: ignore[attr-defined]


def test_the_manifests_exist_one_file_per_role_plus_shared_ones() -> None:
    names = [p.name for p in MANIFESTS]
    assert names == sorted(names)  # `kubectl apply -f deploy/kubernetes/` goes in this order
    assert names[0] == "00-namespace.yaml"
    assert set(_deployments()) == set(ROLES)


@pytest.mark.parametrize(("file", "obj"), OBJECTS,
                         ids=[f"{f}:{o.get('kind')}/{o.get('metadata', {}).get('name')}"
                              for f, o in OBJECTS])
def test_every_object_is_a_known_kind_with_only_fields_its_model_has(file: str,
                                                                     obj: dict[str, Any]) -> None:
    key = (obj.get("apiVersion"), obj.get("kind"))
    assert key in KINDS, f"{file}: unexpected kind {key}"
    model = KINDS[key]  # type: ignore[index]
    assert unknown_fields(obj, model) == []
    parsed = _deserialize(obj)  # the client's own checks (required fields, enum values)
    assert type(parsed).__name__ == model
    assert parsed.metadata.name
    if obj["kind"] != "Namespace":
        assert parsed.metadata.namespace == NAMESPACE


def test_a_typo_or_a_wrong_type_is_caught() -> None:
    d = json.loads(json.dumps(_deployments()["consume"]))
    c = d["spec"]["template"]["spec"]["containers"][0]
    c["readinesProbe"] = c.pop("readinessProbe")
    c["livenessProbe"]["httpGet"]["paht"] = "/healthz"
    d["spec"]["replicas"] = "3"
    d["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] = "yes"
    problems = unknown_fields(d, "V1Deployment")
    assert any("readinesProbe: not a field of V1Container" in p for p in problems)
    assert any("httpGet.paht: not a field of V1HTTPGetAction" in p for p in problems)
    assert any(p.startswith(".spec.replicas: int") for p in problems)
    assert any("runAsNonRoot: bool" in p for p in problems)
    with pytest.raises(ValueError):  # and the client itself refuses a container without a name
        del d["spec"]["template"]["spec"]["containers"][0]["name"]
        _deserialize(d)


def test_references_between_objects_resolve() -> None:
    config_maps, secrets = _named("ConfigMap"), _named("Secret")
    claims, deployments = _named("PersistentVolumeClaim"), _named("Deployment")
    for d in deployments.values():
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert d["spec"]["selector"]["matchLabels"].items() <= labels.items()
        pod = d["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        for c in pod["containers"]:
            for m in c["volumeMounts"]:
                assert m["name"] in volumes, (d["metadata"]["name"], m)
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in secrets[ref["name"]]["stringData"]
        for v in volumes.values():
            if "configMap" in v:
                assert v["configMap"]["name"] in config_maps
            if "secret" in v:
                s = secrets[v["secret"]["secretName"]]
                assert {i["key"] for i in v["secret"].get("items", [])} <= set(s["stringData"])
            if "persistentVolumeClaim" in v:
                assert v["persistentVolumeClaim"]["claimName"] in claims
    for svc in _named("Service").values():
        (target,) = [d for d in deployments.values()
                     if svc["spec"]["selector"].items()
                     <= d["spec"]["template"]["metadata"]["labels"].items()]
        ports = {p["name"] for p in target["spec"]["template"]["spec"]["containers"][0]["ports"]}
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= ports
    for pdb in _named("PodDisruptionBudget").values():
        assert any(pdb["spec"]["selector"]["matchLabels"].items()
                   <= d["spec"]["template"]["metadata"]["labels"].items()
                   for d in deployments.values())


# ---- commands, options, configuration ----------------------------------------------------

def _parse(args: list[str]) -> dict[str, Any]:
    """Click's parse of `vigil ARGS` (no command runs): an unknown option, a missing required
    one or a value of the wrong type raises."""
    import typer.main

    from detector.cli import app

    group = typer.main.get_command(app)
    assert args[0] in group.commands, f"vigil has no command {args[0]!r}"  # type: ignore[attr-defined]
    cmd = group.commands[args[0]]  # type: ignore[attr-defined]
    with cmd.make_context(f"vigil {args[0]}", list(args[1:])) as ctx:
        return dict(ctx.params)


def _mounted(pod: dict[str, Any], container: dict[str, Any], path: str) -> tuple[dict[str, Any],
                                                                                  dict[str, Any]]:
    """The volume mount holding `path`, and its volume."""
    p = PurePosixPath(path)
    mounts = [m for m in container["volumeMounts"]
              if p == PurePosixPath(m["mountPath"]) or PurePosixPath(m["mountPath"]) in p.parents]
    assert mounts, f"{path} is on no volume (the root file system is read-only)"
    mount = max(mounts, key=lambda m: len(m["mountPath"]))
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    return mount, volume


def _file(pod: dict[str, Any], container: dict[str, Any], path: str) -> str:
    """The text a container sees at `path`, from the ConfigMap or Secret mounted there."""
    mount, volume = _mounted(pod, container, path)
    rel = str(PurePosixPath(path).relative_to(mount["mountPath"]))
    if "configMap" in volume:
        return str(_named("ConfigMap")[volume["configMap"]["name"]]["data"][rel])
    if "secret" in volume:
        items = {i["path"]: i["key"] for i in volume["secret"].get("items", [])}
        return str(_named("Secret")[volume["secret"]["secretName"]]["stringData"][items.get(rel, rel)])
    raise AssertionError(f"{path} is not a file from a ConfigMap or Secret")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    import os

    for name in list(os.environ):
        if name.startswith("VIGIL_"):
            monkeypatch.delenv(name)
    return monkeypatch


def _env_is_a_config_key(name: str) -> bool:
    from pydantic import BaseModel

    from detector.config import VigilConfig

    model: Any = VigilConfig
    for part in name.removeprefix("VIGIL_").lower().split("__"):
        if not (isinstance(model, type) and issubclass(model, BaseModel)) \
                or part not in model.model_fields:
            return False
        model = model.model_fields[part].annotation
    return True


class Role:
    """One Deployment's container as `vigil` sees it: its parsed options and configuration."""

    def __init__(self, name: str, tmp: Path, env: pytest.MonkeyPatch) -> None:
        from detector.config import load_config

        self.deployment = _deployments()[name]
        self.pod = self.deployment["spec"]["template"]["spec"]
        (self.container,) = self.pod["containers"]
        self.params = _parse(self.container["args"])
        for e in self.container.get("env", []):
            assert _env_is_a_config_key(e["name"]), e["name"]
            env.setenv(e["name"], e.get("value", "from-a-secret"))
        cfg_path = tmp / f"{name}.yaml"
        cfg_path.write_text(_file(self.pod, self.container, str(self.params["config"])))
        self.cfg = load_config(cfg_path)

    def probe_target(self) -> tuple[str, int]:
        """Where this command serves /healthz /readyz /metrics: (host, port)."""
        name, cfg, p = self.container["args"][0], self.cfg, self.params
        if name == "consume":
            return cfg.kafka.http_host, cfg.kafka.http_port
        if name == "remediate":
            return cfg.kafka.http_host, (p["http_port"] if p["http_port"] is not None
                                         else cfg.kafka.http_port + 1)
        if name == "metrics":
            return p["http_host"], p["http_port"]
        return p["host"] or cfg.serve.host, p["port"] or cfg.serve.port


@pytest.mark.parametrize("name", sorted(ROLES))
def test_each_container_runs_a_real_vigil_command_with_options_that_exist(
        name: str, tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    role = Role(name, tmp_path, clean_env)
    assert role.container.get("command") in (None, ["vigil"])  # the image's ENTRYPOINT
    assert role.params.get("act") in (None, False)  # dry-run: nothing acts until told to
    assert role.cfg.serve.engine.dry_run


def test_the_config_and_policy_configmaps_load_with_vigils_own_loaders(tmp_path: Path,
                                                                       clean_env: Any) -> None:
    from detector.config import load_config
    from remediation.policy import parse_policy

    data = _named("ConfigMap")["vigil-config"]["data"]
    assert set(data) == {"vigil.yaml", "metrics.yaml"}
    for key, text in data.items():
        (tmp_path / key).write_text(text)
        cfg = load_config(tmp_path / key)
        assert cfg.serve.engine.dry_run
    assert load_config(tmp_path / "metrics.yaml").prometheus.queries
    # the watcher is its own role: queries here would make vigil consume poll them too
    assert not load_config(tmp_path / "vigil.yaml").prometheus.queries
    policy = parse_policy(_named("ConfigMap")["vigil-policy"]["data"]["policy.yaml"], "policy.yaml")
    assert policy.rules and not policy.warnings


def test_every_file_a_command_reads_is_mounted_and_parses(tmp_path: Path,
                                                          clean_env: pytest.MonkeyPatch) -> None:
    from remediation.alertmanager.settings import MIN_SECRET_BYTES
    from remediation.policy import parse_policy

    for name in ("serve", "remediate"):
        role = Role(name, tmp_path, clean_env)
        policy = role.params.get("policy") or role.cfg.serve.policy
        parse_policy(_file(role.pod, role.container, str(policy)), str(policy))
    serve = Role("serve", tmp_path, clean_env)
    token = _file(serve.pod, serve.container, str(serve.cfg.serve.bearer_token_file)).strip()
    assert len(token.encode()) >= MIN_SECRET_BYTES  # else vigil serve refuses to start
    assert "REPLACE-ME" in token  # a template, obviously fake


def test_the_database_dsn_is_a_placeholder_nothing_reads_yet() -> None:
    secret = _named("Secret")["vigil-serve"]
    assert "REPLACE-ME" in secret["stringData"]["database-dsn"]
    for d in _deployments().values():
        pod = d["spec"]["template"]["spec"]
        for c in pod["containers"]:
            assert "database-dsn" not in json.dumps(c.get("env", [])), "no option reads it yet"
        for v in pod["volumes"]:
            if v.get("secret", {}).get("secretName") == "vigil-serve":
                assert [i["key"] for i in v["secret"]["items"]] == ["token"]


def test_what_each_command_writes_is_on_a_writable_volume(tmp_path: Path,
                                                          clean_env: pytest.MonkeyPatch) -> None:
    for name in ROLES:
        role = Role(name, tmp_path, clean_env)
        cfg, p = role.cfg, role.params
        writes = {"/tmp"}
        if name == "consume":
            writes.add(str(cfg.kafka.checkpoint_dir))
        if name == "serve":
            writes |= {str(cfg.serve.audit_db), str(cfg.serve.inbox_db)}
        if name == "remediate":
            writes.add(str(p["audit_db"]))
        if name == "metrics":
            writes.add(str(p["out_dir"] or cfg.output.dir))
        for path in writes:
            mount, volume = _mounted(role.pod, role.container, path)
            assert not mount.get("readOnly"), (name, path)
            assert "emptyDir" in volume or "persistentVolumeClaim" in volume, (name, path)


# ---- probes against the real servers -----------------------------------------------------

def _probes(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: container[k] for k in ("startupProbe", "livenessProbe", "readinessProbe")}


def _probe_url(probe: dict[str, Any], container: dict[str, Any]) -> tuple[str, int]:
    """(path, port) of an httpGet probe."""
    assert "httpGet" in probe, probe  # the kubelet's own request: no probe runs in the container
    port = probe["httpGet"]["port"]
    if isinstance(port, str):
        (port,) = [p["containerPort"] for p in container["ports"] if p["name"] == port]
    return probe["httpGet"]["path"], int(port)


@pytest.mark.parametrize("name", sorted(ROLES))
def test_probes_name_the_paths_and_port_the_command_serves(name: str, tmp_path: Path,
                                                           clean_env: pytest.MonkeyPatch) -> None:
    role = Role(name, tmp_path, clean_env)
    host, port = role.probe_target()
    probes = _probes(role.container)
    # the kubelet reaches the pod's address: the server may not bind loopback only
    assert not ipaddress.ip_address(host).is_loopback, (name, host)
    for kind, probe in probes.items():
        path, probe_port = _probe_url(probe, role.container)
        assert probe_port == port, (kind, probe_port, port)
        # readiness hangs on the broker and Prometheus, which a restart does not fix
        assert path == ("/readyz" if kind == "readinessProbe" else "/healthz"), (kind, path)
    assert port in {p["containerPort"] for p in role.container["ports"]}


class FakeProbe:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry

        self.registry = CollectorRegistry()
        self.is_ready = True

    def is_alive(self) -> bool:
        return True

    def ready(self) -> tuple[bool, str]:
        return self.is_ready, "ok" if self.is_ready else "not connected to the broker"


@pytest.fixture
def side_server() -> Iterator[tuple[FakeProbe, int]]:
    from detector.runtime.probes import serve

    probe = FakeProbe()
    server = serve(probe, "127.0.0.1", 0)
    try:
        yield probe, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _get(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_the_side_servers_probe_paths_answer_on_the_real_side_server(
        side_server: tuple[FakeProbe, int]) -> None:
    probe, port = side_server
    used = {_probe_url(p, d["spec"]["template"]["spec"]["containers"][0])[0]
            for name, d in _deployments().items() if ROLES[name].startswith("side")
            for p in _probes(d["spec"]["template"]["spec"]["containers"][0]).values()}
    assert used <= SIDE_PATHS
    assert {path: _get(port, path) for path in sorted(used)} == {"/healthz": 200, "/readyz": 200}
    probe.is_ready = False
    assert (_get(port, "/healthz"), _get(port, "/readyz")) == (200, 503)
    assert _get(port, "/nonexistent") == 404  # so a 200 above is the path, not a catch-all


def test_vigil_serve_answers_its_probe_paths_without_credentials(
        tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    from remediation.alertmanager.app import create_app

    role = Role("serve", tmp_path, clean_env)
    s = role.cfg.serve
    (tmp_path / "policy.yaml").write_text(_file(role.pod, role.container, str(s.policy)))
    (tmp_path / "token").write_text(_file(role.pod, role.container, str(s.bearer_token_file)))
    settings = s.model_copy(update={"policy": tmp_path / "policy.yaml",
                                    "bearer_token_file": tmp_path / "token",
                                    "audit_db": tmp_path / "audit.db",
                                    "inbox_db": tmp_path / "inbox.db"})
    paths = {_probe_url(p, role.container)[0] for p in _probes(role.container).values()}
    t0 = time.monotonic()
    with TestClient(create_app(settings)) as c:  # the lifespan starts the engine process
        started = time.monotonic() - t0
        got = {path: c.get(path).status_code for path in sorted(paths)}
        assert c.get("/episodes").status_code == 401  # everything else needs the token
        ready = c.get("/readyz").json()
    assert got == {"/healthz": 200, "/readyz": 200}
    assert ready["mode"] == "dry-run"
    startup = role.container["startupProbe"]
    assert started < startup["periodSeconds"] * startup["failureThreshold"] / 4


# ---- timings derived from the code -------------------------------------------------------

def _window(probe: dict[str, Any]) -> int:
    return int(probe["periodSeconds"] * probe["failureThreshold"])


def test_grace_periods_cover_what_sigterm_waits_for(tmp_path: Path,
                                                    clean_env: pytest.MonkeyPatch) -> None:
    from remediation.alertmanager.worker import EngineProcess

    grace = {n: d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
             for n, d in _deployments().items()}
    cfg = Role("consume", tmp_path, clean_env).cfg
    drain = cfg.kafka.drain_timeout_s
    # consume: the batch's flush (30 s, consume.py), the drain's flush and the producer's close
    # (drain_timeout_s each), then the checkpoints
    assert grace["consume"] >= 30 + 2 * drain + 10
    # stages: a snapshot per task (each acknowledged within 30 s), the outputs' flush and close
    assert grace["stages"] >= 30 + 2 * drain + 10
    # remediate: decisions in flight, the producer's close, the engine's stop (drain_timeout_s each)
    assert grace["remediate"] >= 3 * Role("remediate", tmp_path, clean_env).cfg.kafka.drain_timeout_s
    # serve: the engine process's stop, then its kill
    stop = inspect.signature(EngineProcess.stop).parameters["timeout_s"].default
    assert grace["serve"] >= stop + 5 + 10
    metrics = Role("metrics", tmp_path, clean_env).cfg.prometheus
    poll = metrics.timeout_s * (1 + metrics.retry.attempts) + metrics.retry.base_s * 3
    assert grace["metrics"] >= poll * len(metrics.queries) + 10


def test_startup_windows_cover_what_comes_before_the_first_answer() -> None:
    from remediation.alertmanager.worker import EngineProcess

    c = {n: d["spec"]["template"]["spec"]["containers"][0] for n, d in _deployments().items()}
    # serve answers nothing until its engine process is up; it gives it this long, then exits
    engine_start = inspect.signature(EngineProcess.start).parameters["timeout_s"].default
    assert _window(c["serve"]["startupProbe"]) >= engine_start + 20
    for name in ROLES:  # about 3 s of imports before the side server binds, measured
        assert _window(c[name]["startupProbe"]) >= 60


def test_singletons_and_the_consumer_groups_rollout() -> None:
    d = _deployments()
    for name in ("serve", "remediate", "metrics"):  # SQLite state, or no coordination
        assert d[name]["spec"]["replicas"] == 1
        assert d[name]["spec"]["strategy"] == {"type": "Recreate"}
    rolling = d["consume"]["spec"]["strategy"]["rollingUpdate"]
    assert rolling == {"maxSurge": 0, "maxUnavailable": 1}  # a surge pod may get no partition
    # the stages replace the whole pipeline per partition: never both on the same logs; their
    # state is in the state topic, so no pod has a volume to keep
    assert 0 in (d["consume"]["spec"]["replicas"], d["stages"]["spec"]["replicas"])
    assert not [v for v in d["stages"]["spec"]["template"]["spec"]["volumes"]
                if "persistentVolumeClaim" in v]
    (claim,) = [v["persistentVolumeClaim"]["claimName"]
                for v in d["consume"]["spec"]["template"]["spec"]["volumes"]
                if "persistentVolumeClaim" in v]
    # checkpoints follow partitions across pods: one volume every replica mounts
    assert _named("PersistentVolumeClaim")[claim]["spec"]["accessModes"] == ["ReadWriteMany"]


def test_a_checkpoint_restore_at_the_size_cap_stays_far_inside_the_liveness_window(
        tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    """The restore runs on the consumer's thread while /healthz answers from the side server's:
    measured here on a real pipeline's checkpoint, extrapolated to kafka.checkpoint_max_bytes."""
    from detector.config import CorrelationConfig, VigilConfig
    from detector.pipeline import Pipeline
    from detector.runtime import checkpoint
    from detector.runtime.probes import serve
    from detector.simulate.runs import simulated_lines

    role = Role("consume", tmp_path, clean_env)
    cfg = VigilConfig(correlation=CorrelationConfig(ttl_seconds=1e6, horizon_seconds=1e6))
    lines, _ = simulated_lines(60_000, seed=1)  # requests kept open: a larger state
    p = Pipeline(cfg)
    for i in range(0, len(lines), 20_000):
        p.process(lines[i:i + 20_000])
    path = checkpoint.save(tmp_path / "ck", "logs/0", checkpoint.pipeline_state(p))
    mib = path.stat().st_size / 2**20
    probe = FakeProbe()
    server = serve(probe, "127.0.0.1", 0)
    port, latencies, done = server.server_address[1], [], threading.Event()

    def poll() -> None:
        while not done.is_set():
            t = time.monotonic()
            assert _get(port, "/healthz") == 200
            latencies.append(time.monotonic() - t)

    t = threading.Thread(target=poll)
    t.start()
    try:
        t0 = time.monotonic()
        checkpoint.restore_pipeline(Pipeline(cfg), checkpoint.load(tmp_path / "ck", "logs/0"))
        seconds = time.monotonic() - t0
    finally:
        done.set()
        t.join()
        server.shutdown()
        server.server_close()
    at_cap = seconds / mib * role.cfg.kafka.checkpoint_max_bytes / 2**20
    live = role.container["livenessProbe"]
    assert latencies and max(latencies) < live["timeoutSeconds"]
    assert at_cap < _window(live) / 4, f"{mib:.1f} MiB in {seconds:.2f} s: {at_cap:.1f} s at the cap"


# ---- pods' security -----------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(ROLES))
def test_every_pod_runs_as_non_root_with_a_read_only_root_and_no_capabilities(name: str) -> None:
    pod = _deployments()[name]["spec"]["template"]["spec"]
    sc = pod["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] > 0 and sc["runAsGroup"] > 0
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert not pod.get("hostNetwork") and not pod.get("hostPID")
    for c in pod["containers"]:
        csc = c["securityContext"]
        assert csc["allowPrivilegeEscalation"] is False
        assert csc["readOnlyRootFilesystem"] is True
        assert csc["capabilities"] == {"drop": ["ALL"]}
        assert "memory" in c["resources"]["limits"] and c["resources"]["requests"]
    user = _dockerfile_stages()[-1]["USER"]
    assert str(sc["runAsUser"]) == user.split(":")[0]  # the image's own user


def test_the_namespace_enforces_the_restricted_pod_security_standard() -> None:
    ns = _named("Namespace")[NAMESPACE]
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


# ---- the Dockerfile -----------------------------------------------------------------------

def _dockerfile_stages() -> list[dict[str, Any]]:
    """Each stage's instructions: {'FROM': ..., 'COPY': [...], 'RUN': [...], 'USER': ..., ...}."""
    text = (DEPLOY / "Dockerfile").read_text()
    logical = re.sub(r"\\\n", " ", text)
    stages: list[dict[str, Any]] = []
    args: dict[str, str] = {}
    for line in logical.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
            continue
        if word == "FROM":
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], rest.split()[0])
            stages.append({"FROM": image, "AS": rest.split()[-1] if " AS " in rest.upper() else "",
                           "COPY": [], "RUN": []})
            continue
        stage = stages[-1]
        if word in ("COPY", "ADD", "RUN"):
            stage.setdefault(word, []).append(rest)
        else:
            stage[word] = rest
    return stages


def test_the_dockerfile_builds_the_wheel_then_installs_only_it_as_a_non_root_user() -> None:
    build, final = _dockerfile_stages()
    assert build["AS"] == "build" and any("pip wheel" in r and "--no-deps" in r
                                          for r in build["RUN"])
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", final["FROM"])
    assert "ADD" not in final
    for copy in final["COPY"]:  # no source tree: the wheel from the build stage, nothing else
        words = copy.split()
        assert words[0] == "--from=build" and all(w.endswith(".whl") for w in words[1:-1]), copy
    assert any("pip install" in r and ".whl" in r for r in final["RUN"])
    assert any("python -m venv /opt/vigil" in r for r in final["RUN"])  # the wheel's own venv
    user, _, group = final["USER"].partition(":")
    assert user.isdigit() and int(user) > 0 and (not group or int(group) > 0)
    assert json.loads(final["ENTRYPOINT"]) == ["vigil"]
    assert all("HEALTHCHECK" not in s for s in (build, final))  # the probes are Kubernetes's
    # the build stage copies what the wheel is made of: the packages pyproject.toml names
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = {c.split()[0] for c in build["COPY"]}
    assert packages <= copied and {"pyproject.toml", "README.md"} <= set(" ".join(build["COPY"]).split())


def test_the_dockerignore_sends_only_what_the_wheel_is_made_of() -> None:
    lines = [ln for ln in (ROOT / ".dockerignore").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "*"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "detector", "models", "remediation"}


def test_deploy_readme_states_the_probe_timings_and_grace_periods_the_manifests_have() -> None:
    text = (DEPLOY / "README.md").read_text()
    probe_rows = {ln.split("|")[1].strip(): [c.strip() for c in ln.split("|")[2:5]]
                  for ln in text.split("| role | startup | liveness | readiness |")[1]
                  .split("\n\n")[0].splitlines()[2:]}
    for name, d in _deployments().items():
        c = d["spec"]["template"]["spec"]["containers"][0]
        for cell, kind in zip(probe_rows[name], ("startupProbe", "livenessProbe", "readinessProbe"),
                              strict=True):
            p = c[kind]
            assert f"every {p['periodSeconds']} s" in cell, (name, kind, cell)
            assert f"{p['failureThreshold']} failures" in cell, (name, kind, cell)
        grace = d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert f"| {name} | {grace} |" in text, (name, grace)
