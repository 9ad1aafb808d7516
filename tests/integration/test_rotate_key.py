"""`clarion rotate-key` re-encrypts every secret online: the API keeps serving."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import sqlalchemy as sa

from clarion.security import decode_master_key, key_id
from tests.api.test_apps import p8_key
from tests.conftest import ADMIN
from tests.server import clarion_env, running_clarion

TOKEN = "d4" * 32


def _blob_key_ids(db: Path) -> set[bytes]:
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        blobs = list(conn.execute(sa.text("SELECT token_enc FROM devices")).scalars())
        blobs += list(conn.execute(sa.text("SELECT vapid_private_key_enc FROM apps")).scalars())
        blobs += [b for b in conn.execute(sa.text("SELECT apns_credentials_enc FROM apps")).scalars() if b]
    engine.dispose()
    return {bytes(blob[1:5]) for blob in blobs}


def test_rotate_key_while_serving(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with running_clarion("api", data, CLARION_SECRET_KEY="") as clarion:
        old_key = decode_master_key((data / "secret-key").read_text())
        app = httpx.post(f"{clarion.url}/v1/apps", json={"name": "rot"}, headers=ADMIN).json()
        secret = {"Authorization": f"Bearer {app['secret_key']}"}
        apns = {"team_id": "TEAM123456", "key_id": "KEY1234567", "private_key": p8_key(), "topic": "com.x",
                "environment": "sandbox"}
        assert httpx.put(f"{clarion.url}/v1/apps/{app['id']}/credentials/apns", json=apns,
                         headers=secret).status_code == 200
        device = httpx.post(f"{clarion.url}/v1/devices", json={"user_id": "u", "platform": "ios", "token": TOKEN},
                            headers=secret).json()

        rotated = subprocess.run([sys.executable, "-m", "clarion", "rotate-key"], capture_output=True, text=True,
                                 env=clarion_env(data, 0, CLARION_SECRET_KEY=""), timeout=120)
        assert rotated.returncode == 0, rotated.stdout + rotated.stderr

        new_key = decode_master_key((data / "secret-key").read_text())
        assert new_key != old_key and not (data / "secret-key.previous").exists()
        assert _blob_key_ids(data / "clarion.db") == {key_id(new_key)}
        # The running process reads what was re-encrypted and finds the device by its new hash.
        view = httpx.get(f"{clarion.url}/v1/apps/{app['id']}", headers=secret).json()
        assert view["credentials"]["apns"]["team_id"] == "TEAM123456"
        again = httpx.post(f"{clarion.url}/v1/devices", json={"user_id": "u", "platform": "ios", "token": TOKEN},
                           headers=secret)
        assert again.status_code == 200 and again.json()["id"] == device["id"]
        assert "re-encrypting secrets" in rotated.stdout
