"""The Kubernetes hook against a local HTTP server that follows the API's paths and payloads
(no cluster runs here): restart, rollback, scale, throttle, refused names, in-cluster auth."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from remediation.actions import Action
from remediation.hooks.kubernetes import RATE_LIMIT, RESTARTED_AT, KubernetesHook, connection
from remediation.trigger import Trigger
from tests.support.services.fake_kube import FakeKube, write_kubeconfig


# ---- kubernetes, against a local server with the API's paths and payloads ------------------------
@pytest.fixture
def kube(tmp_path: Path) -> Iterator[tuple[FakeKube, Path]]:
    fake = FakeKube()
    cfg = write_kubeconfig(tmp_path / "kubeconfig", fake.url)
    yield fake, cfg
    fake.server.shutdown()


def kube_action(params: dict[str, Any]) -> Any:
    hook = KubernetesHook()
    p = hook.validate(params)
    a = Action("r", 0, p["operation"], "kubernetes", "cart", p, 5.0, 0.0, "e")
    t = Trigger("manual", "f", "firing", 0.0, labels={"service": "cart", "ns": "shop"})
    return asyncio.run(hook.run(a, t))


def test_kubernetes_rollout_restart_sets_the_restartedAt_annotation(kube: tuple[FakeKube, Path]
                                                                    ) -> None:
    fake, cfg = kube
    out = kube_action({"operation": "restart", "namespace": "${labels.ns}",
                       "deployment": "${labels.service}", "kubeconfig": str(cfg)})
    assert out.ok, out.detail
    method, path, ctype, _ = fake.calls[-1]
    assert (method, path, ctype) == ("PATCH", "/apis/apps/v1/namespaces/shop/deployments/cart",
                                     "application/strategic-merge-patch+json")
    assert RESTARTED_AT in fake.deployment["spec"]["template"]["metadata"]["annotations"]


def test_kubernetes_rollback_takes_the_previous_replicasets_template(kube: tuple[FakeKube, Path]
                                                                     ) -> None:
    fake, cfg = kube
    out = kube_action({"operation": "rollback", "namespace": "shop", "deployment": "cart",
                       "kubeconfig": str(cfg)})
    assert out.ok, out.detail
    assert out.data == {"from_revision": 3, "to_revision": 2}
    tmpl = fake.deployment["spec"]["template"]
    assert tmpl["spec"]["containers"][0]["image"] == "cart:1.0"
    assert "pod-template-hash" not in tmpl["metadata"]["labels"]


def test_kubernetes_scale_and_throttle(kube: tuple[FakeKube, Path]) -> None:
    fake, cfg = kube
    assert kube_action({"operation": "scale", "namespace": "shop", "deployment": "cart",
                        "replicas": 5, "kubeconfig": str(cfg)}).ok
    assert fake.deployment["spec"]["replicas"] == 5
    assert fake.calls[-1][2] == "application/merge-patch+json"
    assert kube_action({"operation": "throttle", "namespace": "shop", "ingress": "cart",
                        "rps": 20, "kubeconfig": str(cfg)}).ok
    assert fake.ingress["metadata"]["annotations"][RATE_LIMIT] == "20"


def test_kubernetes_refuses_names_that_cannot_exist_and_reports_api_errors(
        kube: tuple[FakeKube, Path]) -> None:
    """A name that is not a DNS-1123 label/subdomain never reaches the API server: literal ones
    fail the policy check, ones rendered from an alert are input errors (a path like
    `namespaces/../..` would otherwise climb to another resource)."""
    from remediation.actions import InputError
    from remediation.hooks.base import HookParamError

    fake, cfg = kube
    with pytest.raises(HookParamError, match="not a valid Kubernetes name"):
        KubernetesHook().validate({"operation": "restart", "namespace": "../../x",
                                   "deployment": "cart", "kubeconfig": str(cfg)})
    for labels in ({"ns": "..", "service": "cart"}, {"ns": "shop", "service": "a/b"},
                   {"ns": "shop", "service": "Cärt"}, {"ns": "shop", "service": "c" * 300}):
        hook = KubernetesHook()
        p = hook.validate({"operation": "restart", "namespace": "${labels.ns}",
                           "deployment": "${labels.service}", "kubeconfig": str(cfg)})
        a = Action("r", 0, "restart", "kubernetes", "cart", p, 5.0, 0.0, "e")
        t = Trigger("manual", "f", "firing", 0.0, labels=labels)
        with pytest.raises(InputError, match="not a valid Kubernetes name"):
            hook.prepare(a, t)
        with pytest.raises(InputError):
            asyncio.run(hook.run(a, t))
    assert fake.calls == []  # nothing was sent
    cfg.write_text(cfg.read_text().replace("kube-token", "wrong"))
    out = kube_action({"operation": "scale", "namespace": "shop", "deployment": "cart",
                       "replicas": 1, "kubeconfig": str(cfg)})
    assert not out.ok and "401" in out.detail


def test_kubernetes_in_cluster_auth_reads_the_service_account(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import remediation.hooks.kubernetes as k

    (tmp_path / "token").write_text("sa-token\n")
    (tmp_path / "ca.crt").write_text("CA")
    monkeypatch.setattr(k, "SA_DIR", tmp_path)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "6443")
    monkeypatch.delenv("KUBECONFIG", raising=False)
    server, headers, verify, cert = connection({"in_cluster": True})
    assert server == "https://10.0.0.1:6443" and headers == {"Authorization": "Bearer sa-token"}
    assert verify == str(tmp_path / "ca.crt") and cert is None
