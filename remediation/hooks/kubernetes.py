"""The `kubernetes` hook: rollout restart, rollback to the previous ReplicaSet's template, scale,
and throttle through an ingress rate-limit annotation, over the API server's REST paths.

Auth: in-cluster (the service account's token and CA, `KUBERNETES_SERVICE_HOST`) or a kubeconfig
(its current context: server, CA, bearer token or client certificate). No cluster runs in the
tests: they use a local HTTP server that follows the same paths and payloads.
"""

from __future__ import annotations

import base64
import json
import os
import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import yaml

from remediation.actions import Action, InputError, Outcome
from remediation.hooks.base import HookParamError
from remediation.templating import render
from remediation.trigger import Trigger

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
REVISION = "deployment.kubernetes.io/revision"
RATE_LIMIT = "nginx.ingress.kubernetes.io/limit-rps"
_OPS = ("restart", "rollback", "scale", "throttle")
_SMP = "application/strategic-merge-patch+json"
_MERGE = "application/merge-patch+json"
_JSON_PATCH = "application/json-patch+json"
# Object names as the API server accepts them: a namespace is a DNS-1123 label, a deployment or
# an ingress a DNS-1123 subdomain. Anything else cannot exist, so it is never sent.
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def check_name(kind: str, value: str) -> str:
    """`value` if it can name a Kubernetes `kind` (namespace: DNS-1123 label, at most 63
    characters; other objects: DNS-1123 subdomain, at most 253), else `InputError`.

    >>> check_name("namespace", "shop"), check_name("deployment", "cart.v2")
    ('shop', 'cart.v2')
    >>> try:
    ...     check_name("namespace", "..")
    ... except InputError as exc:
    ...     print(exc)
    namespace '..' is not a valid Kubernetes name (DNS-1123 label, at most 63 characters)
    """
    label = kind == "namespace"
    pattern, limit = (_LABEL, 63) if label else (_SUBDOMAIN, 253)
    if len(value) > limit or pattern.fullmatch(value) is None:
        shown = value if len(value) <= 80 else value[:77] + "..."
        raise InputError(f"{kind} {shown!r} is not a valid Kubernetes name (DNS-1123 "
                         f"{'label' if label else 'subdomain'}, at most {limit} characters)")
    return value


class KubeError(RuntimeError):
    pass


def connection(params: dict[str, Any]) -> tuple[str, dict[str, str], Any, Any]:
    """(server, headers, verify, cert) from `kubeconfig` (path), else in-cluster files."""
    kubeconfig = params.get("kubeconfig") or os.environ.get("KUBECONFIG")
    if kubeconfig and not params.get("in_cluster"):
        return _from_kubeconfig(Path(str(kubeconfig)), params.get("context"))
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
    token_file = SA_DIR / "token"
    if not host or not token_file.is_file():
        raise KubeError("no kubeconfig given and not running in a cluster (no service account)")
    token = token_file.read_text().strip()
    return (f"https://{host}:{port or 443}", {"Authorization": f"Bearer {token}"},
            str(SA_DIR / "ca.crt"), None)


def _from_kubeconfig(path: Path, context: str | None) -> tuple[str, dict[str, str], Any, Any]:
    try:
        cfg = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise KubeError(f"kubeconfig {path}: {exc}") from exc
    name = context or cfg.get("current-context")
    ctx = next((c["context"] for c in cfg.get("contexts", []) if c.get("name") == name), None)
    if ctx is None:
        raise KubeError(f"kubeconfig {path}: no context {name!r}")
    cluster: dict[str, Any] = next(
        (c["cluster"] for c in cfg.get("clusters", []) if c["name"] == ctx["cluster"]), {})
    user: dict[str, Any] = next(
        (u["user"] for u in cfg.get("users", []) if u["name"] == ctx.get("user")), {})
    server = cluster.get("server")
    if not server:
        raise KubeError(f"kubeconfig {path}: cluster {ctx['cluster']!r} has no server")
    verify: Any = not cluster.get("insecure-skip-tls-verify", False)
    if cluster.get("certificate-authority"):
        verify = cluster["certificate-authority"]
    elif cluster.get("certificate-authority-data"):
        verify = _data_file(cluster["certificate-authority-data"])
    headers = {}
    token = user.get("token") or (Path(user["tokenFile"]).read_text().strip()
                                  if user.get("tokenFile") else None)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    cert = None
    if user.get("client-certificate") or user.get("client-certificate-data"):
        crt = user.get("client-certificate") or _data_file(user["client-certificate-data"])
        key = user.get("client-key") or _data_file(user["client-key-data"])
        cert = (crt, key)
    return server.rstrip("/"), headers, verify, cert


def _data_file(b64: str) -> str:
    f = tempfile.NamedTemporaryFile(prefix="vigil-kube-", delete=False)  # noqa: SIM115
    f.write(base64.b64decode(b64))
    f.close()
    os.chmod(f.name, 0o600)
    return f.name


class KubernetesHook:
    """Params: `operation` (restart | rollback | scale | throttle), `namespace`, `deployment` (or
    `ingress` for throttle), `replicas` (scale), `rps` (throttle), and auth (`kubeconfig`,
    `context`, or `in_cluster: true`). Names may use `${...}`; they are percent-encoded into the
    API path."""

    name = "kubernetes"

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        p = dict(params)
        op = p.get("operation")
        if op not in _OPS:
            raise HookParamError(f"kubernetes: operation {op!r}; use one of {', '.join(_OPS)}")
        if not isinstance(p.get("namespace"), str):
            raise HookParamError("kubernetes: 'namespace' is required")
        obj = "ingress" if op == "throttle" else "deployment"
        if not isinstance(p.get(obj), str):
            raise HookParamError(f"kubernetes: {op} needs '{obj}'")
        for key in ("kubeconfig", "context"):
            if "${" in str(p.get(key, "")):
                raise HookParamError(f"kubernetes: '{key}' must be literal: where credentials come "
                                     "from is never alert data")
        if op == "scale" and not (isinstance(p.get("replicas"), int) and p["replicas"] >= 0):
            raise HookParamError("kubernetes: scale needs 'replicas' (an integer >= 0)")
        if op == "throttle" and not (isinstance(p.get("rps"), int | float) and p["rps"] > 0):
            raise HookParamError("kubernetes: throttle needs 'rps' (a positive number)")
        for key in ("namespace", obj):
            if "${" not in p[key]:
                try:
                    check_name("namespace" if key == "namespace" else obj, p[key])
                except InputError as exc:
                    raise HookParamError(f"kubernetes: {exc}") from exc
        return p

    def idempotent(self, params: dict[str, Any]) -> bool:
        """Scale and throttle set a value; a restart or a rollback done twice does more."""
        return params.get("operation") in ("scale", "throttle")

    def names(self, action: Action, trigger: Trigger) -> tuple[str, str]:
        """(namespace, object name) rendered for this trigger and checked (`InputError`)."""
        p = action.params
        obj = "ingress" if p["operation"] == "throttle" else "deployment"
        return (check_name("namespace", str(render(p["namespace"], trigger))),
                check_name(obj, str(render(p[obj], trigger))))

    def prepare(self, action: Action, trigger: Trigger) -> None:
        self.names(action, trigger)

    async def run(self, action: Action, trigger: Trigger) -> Outcome:
        p = action.params
        ns, name = (quote(x, safe="") for x in self.names(action, trigger))
        try:
            server, headers, verify, cert = connection(p)
        except KubeError as exc:
            return Outcome(False, str(exc))
        async with httpx.AsyncClient(base_url=server, headers=headers, verify=verify, cert=cert,
                                     timeout=action.timeout_s) as client:
            try:
                op = p["operation"]
                if op == "restart":
                    return await _restart(client, ns, name)
                if op == "scale":
                    return await _scale(client, ns, name, int(p["replicas"]))
                if op == "throttle":
                    return await _throttle(client, ns, name, p["rps"])
                return await _rollback(client, ns, name)
            except (httpx.HTTPError, KubeError, KeyError, ValueError) as exc:
                return Outcome(False, f"{p['operation']} {ns}/{name}: {type(exc).__name__}: {exc}")


def _deployment(ns: str, name: str) -> str:
    return f"/apis/apps/v1/namespaces/{ns}/deployments/{name}"


async def _patch(client: httpx.AsyncClient, path: str, body: Any, ctype: str) -> httpx.Response:
    resp = await client.patch(path, content=json.dumps(body).encode(),
                              headers={"Content-Type": ctype})
    if resp.status_code >= 300:
        raise KubeError(f"PATCH {path} -> {resp.status_code}: {resp.text[:300]}")
    return resp


async def _restart(client: httpx.AsyncClient, ns: str, name: str) -> Outcome:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}}
    await _patch(client, _deployment(ns, name), body, _SMP)
    return Outcome(True, f"rollout restart of {ns}/{name} at {now}", data={"restartedAt": now})


async def _scale(client: httpx.AsyncClient, ns: str, name: str, replicas: int) -> Outcome:
    await _patch(client, _deployment(ns, name) + "/scale", {"spec": {"replicas": replicas}}, _MERGE)
    return Outcome(True, f"scaled {ns}/{name} to {replicas}", data={"replicas": replicas})


async def _throttle(client: httpx.AsyncClient, ns: str, name: str, rps: float) -> Outcome:
    path = f"/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses/{name}"
    body = {"metadata": {"annotations": {RATE_LIMIT: str(int(rps) if float(rps).is_integer() else rps)}}}
    await _patch(client, path, body, _MERGE)
    return Outcome(True, f"ingress {ns}/{name} limited to {rps} requests/s", data={"rps": rps})


async def _rollback(client: httpx.AsyncClient, ns: str, name: str) -> Outcome:
    """What `kubectl rollout undo` does: the deployment's template becomes the template of the
    ReplicaSet with the highest revision below the current one."""
    resp = await client.get(_deployment(ns, name))
    if resp.status_code != 200:
        raise KubeError(f"GET deployment {ns}/{name} -> {resp.status_code}")
    dep = resp.json()
    current = int(dep["metadata"].get("annotations", {}).get(REVISION, "0"))
    selector = ",".join(f"{k}={v}" for k, v in dep["spec"]["selector"]["matchLabels"].items())
    rs_resp = await client.get(f"/apis/apps/v1/namespaces/{ns}/replicasets",
                               params={"labelSelector": selector})
    if rs_resp.status_code != 200:
        raise KubeError(f"list replicasets -> {rs_resp.status_code}")
    uid = dep["metadata"].get("uid")
    owned = [rs for rs in rs_resp.json().get("items", [])
             if any(o.get("uid") == uid for o in rs["metadata"].get("ownerReferences", []))]
    older = [(int(rs["metadata"].get("annotations", {}).get(REVISION, "0")), rs) for rs in owned]
    older = [(rev, rs) for rev, rs in older if rev < current]
    if not older:
        raise KubeError(f"{ns}/{name} has no earlier revision than {current}")
    rev, rs = max(older, key=lambda x: x[0])
    template = rs["spec"]["template"]
    template.get("metadata", {}).get("labels", {}).pop("pod-template-hash", None)
    await _patch(client, _deployment(ns, name),
                 [{"op": "replace", "path": "/spec/template", "value": template}], _JSON_PATCH)
    return Outcome(True, f"rolled {ns}/{name} back from revision {current} to {rev}",
                   data={"from_revision": current, "to_revision": rev})
