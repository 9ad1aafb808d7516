"""No secret, token or key ever appears in a log line (the log is grepped)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from clarion.logs import scrub
from tests.api.test_apps import p8_key
from tests.conftest import ADMIN, ADMIN_TOKEN
from tests.server import running_clarion

TOKEN = "e5" * 32


def test_scrub_removes_every_kind_of_secret() -> None:
    line = f"Bearer abc.def sk_{'x' * 20} pk_{'y' * 20} adm_{'z' * 20} {TOKEN} eyJhbGciOi.eyJzdWIiOi.sig"
    assert scrub(line).count("[redacted]") == 6


def test_api_log_has_no_secrets(tmp_path: Path) -> None:
    with running_clarion("api", tmp_path / "data", CLARION_LOG_LEVEL="DEBUG") as clarion:
        app = httpx.post(f"{clarion.url}/v1/apps", json={"name": "logs"}, headers=ADMIN).json()
        secret = {"Authorization": f"Bearer {app['secret_key']}"}
        pem = p8_key()
        apns = {"team_id": "TEAM123456", "key_id": "KEY1234567", "private_key": pem, "topic": "com.x",
                "environment": "sandbox"}
        httpx.put(f"{clarion.url}/v1/apps/{app['id']}/credentials/apns", json=apns, headers=secret)
        httpx.post(f"{clarion.url}/v1/devices", json={"user_id": "u", "platform": "ios", "token": TOKEN},
                   headers={"Authorization": f"Bearer {app['publishable_key']}"})
        form = {"grant_type": "client_credentials", "client_id": app["key_id"], "client_secret": app["secret_key"]}
        jwt = httpx.post(f"{clarion.url}/oauth/token", data=form).json()["access_token"]
        httpx.get(f"{clarion.url}/v1/users/u", headers={"Authorization": f"Bearer {jwt}"})
        httpx.get(f"{clarion.url}/v1/users/u", headers={"Authorization": "Bearer sk_wrong-key-here"})
        log = clarion.log.read_text()
    lines = [line for line in log.splitlines() if line.startswith("{")]
    assert any(json.loads(line).get("event") == "request" for line in lines), log[-2000:]
    for secret_text in (app["secret_key"], app["publishable_key"], ADMIN_TOKEN, TOKEN, jwt, "PRIVATE KEY",
                        pem.splitlines()[1], "sk_wrong-key-here"):
        assert secret_text not in log
