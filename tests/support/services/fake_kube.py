"""A local HTTP server that follows the Kubernetes API server's paths, patch types and payloads
for deployments, their ReplicaSets, scale and ingresses (no cluster runs in the tests)."""

from __future__ import annotations

import json
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit


def write_kubeconfig(path: Path, server: str, token: str = "kube-token") -> Path:
    """A kubeconfig whose one context points at `server` with a bearer token."""
    path.write_text(textwrap.dedent(f"""
        apiVersion: v1
        kind: Config
        current-context: test
        clusters: [{{name: local, cluster: {{server: "{server}"}}}}]
        users: [{{name: vigil, user: {{token: {token}}}}}]
        contexts: [{{name: test, context: {{cluster: local, user: vigil}}}}]
    """))
    return path


class FakeKube:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, Any]] = []  # method, path, content-type, body
        rs_template = {"metadata": {"labels": {"app": "cart", "pod-template-hash": "old"}},
                       "spec": {"containers": [{"name": "cart", "image": "cart:1.0"}]}}
        self.deployment = {
            "metadata": {"name": "cart", "namespace": "shop", "uid": "u-1",
                         "annotations": {"deployment.kubernetes.io/revision": "3"}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "cart"}},
                     "template": {"metadata": {"labels": {"app": "cart"}},
                                  "spec": {"containers": [{"name": "cart", "image": "cart:1.2"}]}}}}
        owner = [{"kind": "Deployment", "name": "cart", "uid": "u-1"}]
        self.replicasets = [
            {"metadata": {"name": "cart-a", "ownerReferences": owner,
                          "annotations": {"deployment.kubernetes.io/revision": "1"}},
             "spec": {"template": {"metadata": {"labels": {"app": "cart"}}, "spec": {}}}},
            {"metadata": {"name": "cart-b", "ownerReferences": owner,
                          "annotations": {"deployment.kubernetes.io/revision": "2"}},
             "spec": {"template": rs_template}},
            {"metadata": {"name": "cart-c", "ownerReferences": owner,
                          "annotations": {"deployment.kubernetes.io/revision": "3"}},
             "spec": {"template": self.deployment["spec"]["template"]}},
            {"metadata": {"name": "other", "ownerReferences": [{"uid": "u-9"}],
                          "annotations": {"deployment.kubernetes.io/revision": "2"}},
             "spec": {"template": {}}}]
        self.ingress: dict[str, Any] = {"metadata": {"annotations": {}}}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def reply(self, code: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                u = urlsplit(self.path)
                fake.calls.append(("GET", self.path, "", self.headers.get("Authorization")))
                if u.path == "/apis/apps/v1/namespaces/shop/deployments/cart":
                    return self.reply(200, fake.deployment)
                if u.path == "/apis/apps/v1/namespaces/shop/replicasets":
                    assert parse_qs(u.query)["labelSelector"] == ["app=cart"]
                    return self.reply(200, {"kind": "ReplicaSetList", "items": fake.replicasets})
                self.reply(404, {"kind": "Status", "code": 404})

            def do_PATCH(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                ctype = self.headers["Content-Type"]
                fake.calls.append(("PATCH", self.path, ctype, body))
                if self.headers.get("Authorization") != "Bearer kube-token":
                    return self.reply(401, {"kind": "Status", "code": 401})
                if self.path == "/apis/apps/v1/namespaces/shop/deployments/cart":
                    if ctype == "application/json-patch+json":
                        for op in body:
                            assert op["op"] == "replace" and op["path"] == "/spec/template"
                            fake.deployment["spec"]["template"] = op["value"]
                    else:
                        ann = body["spec"]["template"]["metadata"]["annotations"]
                        fake.deployment["spec"]["template"]["metadata"].setdefault(
                            "annotations", {}).update(ann)
                    return self.reply(200, fake.deployment)
                if self.path == "/apis/apps/v1/namespaces/shop/deployments/cart/scale":
                    fake.deployment["spec"]["replicas"] = body["spec"]["replicas"]
                    return self.reply(200, {"kind": "Scale", "spec": body["spec"]})
                if self.path == "/apis/networking.k8s.io/v1/namespaces/shop/ingresses/cart":
                    fake.ingress["metadata"]["annotations"].update(body["metadata"]["annotations"])
                    return self.reply(200, fake.ingress)
                self.reply(404, {"kind": "Status", "code": 404})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
