"""schemathesis against a running `clarion api`: no 5xx, and every response
matches the schema /openapi.json documents."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN
from tests.server import running_clarion

CHECKS = "not_a_server_error,response_schema_conformance,content_type_conformance,status_code_conformance"


def _schemathesis(url: str, credential: str, out: Path) -> subprocess.CompletedProcess[str]:
    st = Path(sys.executable).with_name("st")
    return subprocess.run(
        [
            str(st),
            "run",
            f"{url}/openapi.json",
            "--checks",
            CHECKS,
            "--max-examples",
            "25",
            "--header",
            f"Authorization: Bearer {credential}",
            "--seed",
            "1",
            "--generation-deterministic",  # the same cases every run: CI does not flake
            "--report-dir",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
@pytest.mark.parametrize("who", ["secret", "admin"])
def test_openapi_contract_holds(tmp_path: Path, who: str) -> None:
    with running_clarion("api", tmp_path / "data") as clarion:
        app = httpx.post(
            f"{clarion.url}/v1/apps",
            json={"name": "fuzz"},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        ).json()
        credential = app["secret_key"] if who == "secret" else ADMIN_TOKEN
        result = _schemathesis(clarion.url, credential, tmp_path / "report")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
