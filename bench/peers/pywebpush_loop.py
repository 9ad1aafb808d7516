"""A plain pywebpush loop: Web Push the way many teams send it today.

    .venv/bin/python bench/peers/pywebpush_loop.py config.json

config.json: {"subscriptions": [[endpoint, p256dh, auth], ...], "n": 1000, "ca_pem_path": "..."}.
One `pywebpush.webpush(...)` call per message, in a loop (as a task-queue job
would run it), with the VAPID key as the string most apps keep in settings.
We give it one `requests.Session`, so connections are kept alive: the kindest
reading of "plain". Prints one JSON line: sends, sent, failed, seconds,
cpu_seconds, sends_per_second.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
import uuid

import requests
from cryptography.hazmat.primitives.asymmetric import ec
from pywebpush import WebPushException, webpush

BODY = "A message of ordinary length for a push"


def vapid_private_key_string() -> str:
    """A VAPID private key as base64url of its 32 raw bytes (`vapid --gen` style)."""
    number = ec.generate_private_key(ec.SECP256R1()).private_numbers().private_value
    return base64.urlsafe_b64encode(number.to_bytes(32, "big")).rstrip(b"=").decode()


def send_all(subscriptions: list[list[str]], n: int, ca_pem_path: str) -> dict[str, float]:
    # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override a session's `verify`; set both ways.
    os.environ["REQUESTS_CA_BUNDLE"] = ca_pem_path
    session = requests.Session()
    session.verify = ca_pem_path
    key = vapid_private_key_string()
    sent = 0
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        endpoint, p256dh, auth = subscriptions[i % len(subscriptions)]
        data = json.dumps({"title": "Hello", "body": BODY, "data": {"delivery_id": str(uuid.uuid4())}})
        try:
            webpush({"endpoint": endpoint, "keys": {"p256dh": p256dh, "auth": auth}}, data=data,
                    vapid_private_key=key, vapid_claims={"sub": "mailto:bench@example.com"}, ttl=86400,
                    requests_session=session, timeout=30)
            sent += 1
        except WebPushException:
            pass
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"sends": n, "sent": sent, "failed": n - sent, "seconds": wall, "cpu_seconds": cpu,
            "sends_per_second": n / wall}


def main() -> None:
    with open(sys.argv[1]) as file:
        config = json.load(file)
    print(json.dumps(send_all(config["subscriptions"], config["n"], config["ca_pem_path"])))


if __name__ == "__main__":
    main()
