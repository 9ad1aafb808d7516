"""Provider clients against their fakes on loopback, next to the bare-h2 ceiling.

    .venv/bin/python bench/providers.py [--n 50000] [--out bench/results]

Each fake runs in its own process, so only the client's CPU is counted here.
The APNs client gets one connection (max_connections=1) and ~1,000 pushes in
flight, as does bench/h2_ceiling.py (tuned bare h2, no Clarion code); the
ratio of the two is the figure the target is about (>= 70%). If `h2load`
(Debian's nghttp2-client) is installed, it measures the fake APNs's own
ceiling: a C client the fake cannot outrun shows whether the fake limits us.
Prints a table; writes providers.json and providers.md under --out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

import jwt  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from tests.fakes.process import FakeHandle, fake_in_subprocess  # noqa: E402

from clarion.providers.apns import APNsClient  # noqa: E402
from clarion.providers.base import Content, Outcome, Push, Sent, WebKeys  # noqa: E402
from clarion.providers.fcm import FCMClient  # noqa: E402
from clarion.providers.tls import client_ssl_context  # noqa: E402
from clarion.providers.webpush import WebPushClient, b64url, encrypt  # noqa: E402

BODY = "A message of ordinary length for a push"
IN_FLIGHT = 1000


def run(coro: Awaitable[Any]) -> Any:
    try:
        import uvloop
        return uvloop.run(coro)  # type: ignore[arg-type]
    except ImportError:
        return asyncio.run(coro)  # type: ignore[arg-type]


async def drive(send: Callable[[Sequence[Push]], Awaitable[list[Outcome]]], pushes: list[Push],
                in_flight: int, batch: int) -> dict[str, float]:
    """Send `pushes` in batches, `in_flight // batch` batches at a time; time and CPU of this process."""
    await send(pushes[:batch])  # warm up: connection, JWT/bearer
    batches = [pushes[i:i + batch] for i in range(batch, len(pushes), batch)]
    sent = 0

    async def worker() -> None:
        nonlocal sent
        while batches:
            outcomes = await send(batches.pop())
            sent += sum(1 for o in outcomes if isinstance(o, Sent))

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(max(1, in_flight // batch))))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    total = len(pushes) - batch
    return {"sends": total, "sent": sent, "seconds": wall, "cpu_seconds": cpu, "sends_per_second": total / wall}


def with_fake_cpu(fake: FakeHandle, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    before = fake.call("stats")
    result = measure()
    after = fake.call("stats")
    result["fake_cpu_seconds"] = after["cpu_seconds"] - before["cpu_seconds"]
    return result


# -- APNs ------------------------------------------------------------------------
def apns_pushes(n: int) -> list[Push]:
    """A token per push, as in a broadcast: the request path differs every time, like the real thing."""
    content = Content(title="Hello", body=BODY, sound="default")
    return [Push(str(uuid.uuid4()), secrets.token_hex(32), content) for _ in range(n)]


async def bench_apns(info: dict[str, Any], n: int) -> dict[str, float]:
    client = APNsClient(**info["credentials"], base_url=info["url"], max_connections=1,
                        ssl_context=client_ssl_context(info["ca_pem_path"], alpn=["h2"]))
    try:
        return await drive(client.send, apns_pushes(n + 250), IN_FLIGHT, 250)
    finally:
        await client.aclose()


def bench_ceiling(info: dict[str, Any], n: int) -> dict[str, float]:
    credentials = info["credentials"]
    token = jwt.encode({"iss": credentials["team_id"], "iat": int(time.time())}, credentials["private_key"],
                       algorithm="ES256", headers={"kid": credentials["key_id"]})
    command = [sys.executable, str(ROOT / "bench" / "h2_ceiling.py"), "--url", info["url"], "--ca",
               info["ca_pem_path"], "--jwt", token, "--topic", credentials["topic"], "--n", str(n),
               "--inflight", str(IN_FLIGHT)]
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)


def bench_h2load(info: dict[str, Any], n: int) -> dict[str, float] | None:
    """The fake's own ceiling, driven by nghttp2's C load generator on one connection."""
    if shutil.which("h2load") is None:
        return None
    credentials = info["credentials"]
    token = jwt.encode({"iss": credentials["team_id"], "iat": int(time.time())}, credentials["private_key"],
                       algorithm="ES256", headers={"kid": credentials["key_id"]})
    with tempfile.NamedTemporaryFile("wb", suffix=".json") as payload:
        payload.write(json.dumps({"aps": {"alert": {"title": "Hello", "body": BODY}}}).encode())
        payload.flush()
        command = ["h2load", "-n", str(n), "-c", "1", "-m", str(IN_FLIGHT), "-d", payload.name,
                   "-H", f"authorization: bearer {token}", "-H", f"apns-topic: {credentials['topic']}",
                   "-H", "apns-push-type: alert", f"{info['url']}/3/device/{'ab' * 32}"]
        output = subprocess.run(command, capture_output=True, text=True, timeout=300).stdout
    match = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", output)
    succeeded = re.search(r"(\d+) succeeded", output)
    if not match:
        return None
    seconds = float(match.group(1)) / (1000 if match.group(2) == "ms" else 1)
    return {"sends": n, "sent": int(succeeded.group(1)) if succeeded else 0, "seconds": seconds,
            "sends_per_second": float(match.group(3))}


# -- FCM and Web Push --------------------------------------------------------------
async def bench_fcm(info: dict[str, Any], n: int) -> dict[str, float]:
    client = FCMClient(service_account=info["service_account"], base_url=info["url"],
                       ssl_context=client_ssl_context(info["ca_pem_path"]), max_connections=10)
    pushes = [Push(str(uuid.uuid4()), f"fcm-token-{i}", Content(title="Hello", body=BODY)) for i in range(n + 100)]
    try:
        return await drive(client.send, pushes, 200, 100)
    finally:
        await client.aclose()


async def bench_webpush(info: dict[str, Any], subscriptions: list[tuple[str, str, str]], n: int) -> dict[str, float]:
    key = b64url((1234567890123456789).to_bytes(32, "big"))
    client = WebPushClient(vapid_private_key=key, subject="mailto:bench@example.com", allow_local_endpoints=True,
                           ssl_context=client_ssl_context(info["ca_pem_path"]), max_per_origin=10)
    content = Content(title="Hello", body=BODY)
    pushes = [Push(str(uuid.uuid4()), endpoint, content, web_keys=WebKeys(p256dh, auth))
              for endpoint, p256dh, auth in (subscriptions[i % len(subscriptions)] for i in range(n + 100))]
    try:
        return await drive(client.send, pushes, 200, 100)
    finally:
        await client.aclose()


def encryption_cpu(subscription: tuple[str, str, str], rounds: int = 2000) -> float:
    """CPU microseconds of RFC 8291 encryption (fresh ECDH key) per message."""
    payload = json.dumps({"title": "Hello", "body": BODY, "clarion": {"delivery_id": str(uuid.uuid4())}}).encode()
    start = time.process_time()
    for _ in range(rounds):
        encrypt(payload, subscription[1], subscription[2])
    return (time.process_time() - start) / rounds * 1e6


# -- putting it together ------------------------------------------------------------
def measure(n: int, use_h2load: bool) -> dict[str, Any]:
    results: dict[str, Any] = {"n": n, "in_flight": IN_FLIGHT, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    with fake_in_subprocess("apns", record=False, fast_hpack=True) as fake:
        results["h2_ceiling"] = with_fake_cpu(fake, lambda: bench_ceiling(fake.info, n))
        results["apns"] = with_fake_cpu(fake, lambda: run(bench_apns(fake.info, n)))
        if use_h2load:
            results["h2load_fake_apns"] = with_fake_cpu(fake, lambda: bench_h2load(fake.info, n))
    fcm_n = max(100, n // 5)  # HTTP/1.1 through aiohttp: slower, so fewer
    with fake_in_subprocess("fcm", record=False) as fake:
        results["fcm"] = with_fake_cpu(fake, lambda: run(bench_fcm(fake.info, fcm_n)))
    with fake_in_subprocess("webpush", record=False, decrypt=False) as fake:
        subscriptions = fake.call("subscribe", 100)
        results["webpush"] = with_fake_cpu(fake, lambda: run(bench_webpush(fake.info, subscriptions, fcm_n)))
        results["webpush_encrypt_cpu_us"] = encryption_cpu(subscriptions[0])
    results["apns_over_ceiling"] = results["apns"]["sends_per_second"] / results["h2_ceiling"]["sends_per_second"]
    results["apns_cpu_over_ceiling_cpu"] = (results["apns"]["cpu_seconds"] / results["apns"]["sends"]) / (
        results["h2_ceiling"]["cpu_seconds"] / results["h2_ceiling"]["sends"])
    return results


ROWS = [
    ("h2_ceiling", "bare tuned h2 → fake APNs (1 conn, no Clarion code)"),
    ("apns", "Clarion APNsClient → fake APNs (1 conn)"),
    ("h2load_fake_apns", "h2load (C) → fake APNs (1 conn): the fake's ceiling"),
    ("fcm", "Clarion FCMClient → fake FCM (aiohttp, 10 conns)"),
    ("webpush", "Clarion WebPushClient → fake push service (10 conns)"),
]


def per_10k(row: dict[str, Any], key: str) -> str:
    return f"{row[key] / row['sends'] * 10_000:.2f}" if row.get(key) is not None and row["sends"] else "—"


def table_rows(results: dict[str, Any]) -> list[list[str]]:
    rows = []
    for key, label in ROWS:
        row = results.get(key)
        if row:
            rows.append([label, f"{row['sends']:,}", f"{row.get('sent', row['sends'] - row.get('errors', 0)):,}",
                         f"{row['sends_per_second']:,.0f}", per_10k(row, "cpu_seconds"),
                         per_10k(row, "fake_cpu_seconds")])
    return rows


HEADERS = ["client → server", "sends", "accepted", "sends/s", "client CPU s / 10k", "fake CPU s / 10k"]


def summary(results: dict[str, Any]) -> list[str]:
    return [
        f"APNs client / bare-h2 ceiling (throughput, one connection): {results['apns_over_ceiling']:.0%}"
        " (target ≥ 70%)",
        f"APNs client CPU per send / ceiling CPU per send: {results['apns_cpu_over_ceiling_cpu']:.2f}×",
        f"Web Push: RFC 8291 encryption {results['webpush_encrypt_cpu_us']:.0f} µs CPU per message; "
        f"whole client {results['webpush']['cpu_seconds'] / results['webpush']['sends'] * 1e6:.0f} µs CPU per message",
    ]


def save(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "providers.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [f"# Provider clients benchmark ({results['at']}, n={results['n']:,})", "",
             "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(results)]
    lines += [""] + [f"- {line}" for line in summary(results)]
    (out / "providers.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description="Provider clients against their fakes, next to the h2 ceiling.")
    parser.add_argument("--n", type=int, default=50_000, help="APNs sends (FCM and Web Push: n/5)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--no-h2load", action="store_true", help="skip measuring the fake with h2load")
    args = parser.parse_args()
    results = measure(args.n, not args.no_h2load)
    table = Table(title=f"Provider clients on loopback (n={args.n:,}, {IN_FLIGHT} in flight)")
    for header in HEADERS:
        table.add_column(header, justify="left" if header == HEADERS[0] else "right")
    for row in table_rows(results):
        table.add_row(*row)
    console = Console()
    console.print(table)
    for line in summary(results):
        console.print(line)
    save(results, args.out)
    console.print(f"saved {args.out / 'providers.json'} and providers.md")


if __name__ == "__main__":
    main()
