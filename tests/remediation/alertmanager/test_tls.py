"""`vigil serve --tls-cert --tls-key --tls-client-ca`: HTTPS with client certificates required
(mTLS), with certificates made by the `openssl` command for the test."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from detector.bench.servers import free_port

pytestmark = pytest.mark.skipif(not shutil.which("openssl"), reason="needs the openssl command")


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_pki(d: Path) -> None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test-ca",
            "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"))
    (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    for name, extra in (("server", ["-extfile", str(d / "san.cnf")]), ("client", [])):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.csr"))
        openssl("x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.pem"),
                "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "1",
                "-out", str(d / f"{name}.pem"), *extra)


def test_mtls_admits_a_client_certificate_and_refuses_a_client_without_one(tmp_path: Path) -> None:
    make_pki(tmp_path)
    (tmp_path / "policy.yaml").write_text("rules: []\n")
    (tmp_path / "token").write_text("tls-test-token-of-32-bytes-long")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "detector", "serve", "--policy", str(tmp_path / "policy.yaml"),
         "--token-file", str(tmp_path / "token"), "--port", str(port),
         "--audit-db", str(tmp_path / "a.db"), "--inbox-db", str(tmp_path / "i.db"),
         "--tls-cert", str(tmp_path / "server.pem"), "--tls-key", str(tmp_path / "server.key"),
         "--tls-client-ca", str(tmp_path / "ca.pem")])
    url = f"https://127.0.0.1:{port}"
    ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    ctx.load_cert_chain(str(tmp_path / "client.pem"), str(tmp_path / "client.key"))
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(url + "/readyz", verify=ctx)
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline, "vigil serve did not come up"
                time.sleep(0.2)
        assert r.status_code in (200, 503)  # served over TLS with a client certificate
        bare = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))  # no client cert
        with pytest.raises(httpx.HTTPError):
            httpx.get(url + "/healthz", verify=bare)
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/healthz")  # plain HTTP is not served
    finally:
        server.terminate()
        server.wait(timeout=30)
