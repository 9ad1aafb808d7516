"""The API serves HTTPS when CLARION_TLS_CERT_FILE and CLARION_TLS_KEY_FILE are set."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest
import trustme

from tests.server import running_clarion


def test_api_over_tls(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    chain, key = tmp_path / "chain.pem", tmp_path / "key.pem"
    cert.private_key_pem.write_to_path(str(key))
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    env = {"CLARION_TLS_CERT_FILE": str(chain), "CLARION_TLS_KEY_FILE": str(key)}
    with running_clarion("api", tmp_path / "data", scheme="https", verify=context, **env) as clarion:
        assert httpx.get(f"{clarion.url}/healthz", verify=context).json() == {"status": "ok"}
        plain = clarion.url.replace("https://", "http://")
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{plain}/healthz", timeout=2)
