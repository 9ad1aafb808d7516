"""End to end through the fakes: sections 3, 4 and 5 of `make bench` (issue 7).

    .venv/bin/python bench/pipeline.py --size 100000 --out DIR [--quick] [--only embedded,ios,ios_large,scaled,fanout]

3 embedded: `clarion serve` (SQLite in a temp data dir) with fake APNs / FCM /
  Web Push each in its own process; N devices mixed across ios/android/web,
  seeded in-process through clarion's own store code before serve starts; timed
  from `POST /v1/notifications` (audience all) until no delivery is queued.
  Also iOS-only broadcasts: of --ios-size devices, the one Parse Server sends
  in section 7, so the two compare like for like (`embedded_ios`); and of
  --size devices, to set beside the APNs client alone (`embedded_ios_large`).
4 scaled: the same on PostgreSQL (database `clarion_bench`) + RabbitMQ (vhost
  `clarion_bench` when rabbitmqctl can make it), `clarion api` + 1, then 2,
  `clarion worker` processes.
5 fan-out memory: one process that only fans out (clarion's FanOut on the
  embedded broker, as `clarion serve` runs it), for 10,000 and 1,000,000
  targeted devices; its peak RSS (the kernel's high-water mark) for each.

Writes DIR/pipeline.json (the keys bench/run.py reads; bench/README.md) and
prints a table. `--profile` runs the embedded `clarion serve` under
pyinstrument (if installed) and writes DIR/profile-embedded.txt.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

import httpx  # noqa: E402
import psutil  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from tests.fakes.process import FakeHandle, fake_in_subprocess  # noqa: E402
from tests.ports import free_port  # noqa: E402
from tests.server import wait_healthy  # noqa: E402

from clarion.config import Settings  # noqa: E402
from clarion.domain.vapid import new_vapid_keypair  # noqa: E402
from clarion.runtime import Runtime, build_runtime  # noqa: E402
from clarion.security import new_id  # noqa: E402
from clarion.store import apps as app_store  # noqa: E402
from clarion.store.devices import device_address, device_context  # noqa: E402
from clarion.store.migrate import upgrade  # noqa: E402
from clarion.store.tables import devices, notifications, users  # noqa: E402

ADMIN_TOKEN = "adm_bench-admin-token"
SECRET_KEY = "11" * 32
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_DATABASE = "clarion_bench"
RABBIT_VHOST = "clarion_bench"
# The broadcast's platform mix (weights), one device per user.
Mix = tuple[tuple[str, int], ...]
MIX: Mix = (("ios", 1), ("android", 1), ("web", 1))
IOS_ONLY: Mix = (("ios", 1),)  # the broadcast Parse Server sends in bench/peers
CONTENT = {"title": "Hello", "body": "A message of ordinary length for a push"}
SEED_CHUNK = 5_000
console = Console(stderr=True)


# -- processes: start, sample, stop ----------------------------------------------------

@dataclass
class Proc:
    """A clarion process we started, with its peak RSS from the kernel's high-water mark."""

    name: str
    popen: subprocess.Popen[bytes]
    url: str
    log: Path
    ps: psutil.Process = field(init=False)

    def __post_init__(self) -> None:
        self.ps = psutil.Process(self.popen.pid)

    def cpu(self) -> float:
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def peak_rss_mb(self) -> float:
        """VmHWM: the most resident memory the process ever had (Linux)."""
        for line in Path(f"/proc/{self.popen.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float(self.ps.memory_info().rss) / 2**20


def clarion_env(data_dir: Path, port: int, extra: dict[str, str]) -> dict[str, str]:
    env = {**os.environ, "CLARION_DATA_DIR": str(data_dir), "CLARION_PORT": str(port),
           "CLARION_ADMIN_TOKEN": ADMIN_TOKEN, "CLARION_SECRET_KEY": SECRET_KEY, "CLARION_LOG_LEVEL": "WARNING",
           "CLARION_RATE_LIMIT_NOTIFICATIONS": "0", "CLARION_RATE_LIMIT_DEVICES": "0",
           "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(ROOT / "src")]))}
    env.update(extra)
    return env


@contextmanager
def clarion(command: str, data_dir: Path, env: dict[str, str], prefix: list[str] | None = None) -> Iterator[Proc]:
    """`clarion <command>` in its own process until /healthz answers; SIGINT, then SIGTERM, at the end."""
    port = free_port()
    log = data_dir / f"clarion-{command}-{port}.log"
    with open(log, "wb") as out:
        popen = subprocess.Popen([*(prefix or [sys.executable]), "-m", "clarion", command],
                                 env=clarion_env(data_dir, port, env), stdout=out, stderr=subprocess.STDOUT)
    proc = Proc(command, popen, f"http://127.0.0.1:{port}", log)
    try:
        wait_healthy(proc.url, popen, log, timeout=90, name=f"clarion {command}")
        yield proc
    finally:
        stop(popen)


def stop(popen: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGINT, 30), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        if popen.poll() is not None:
            return
        popen.send_signal(sig)
        try:
            popen.wait(wait)
        except subprocess.TimeoutExpired:
            continue


# -- the fakes ---------------------------------------------------------------------------
@dataclass
class Fakes:
    apns: FakeHandle
    fcm: FakeHandle
    webpush: FakeHandle

    def cpu(self) -> dict[str, float]:
        return {name: float(getattr(self, name).call("stats")["cpu_seconds"]) for name in ("apns", "fcm", "webpush")}

    def env(self, ca_file: Path) -> dict[str, str]:
        return {"CLARION_APNS_URL": self.apns.info["url"], "CLARION_FCM_URL": self.fcm.info["url"],
                "CLARION_CA_FILE": str(ca_file), "CLARION_ALLOW_LOCAL_ENDPOINTS": "true"}


@contextmanager
def running_fakes(work: Path) -> Iterator[tuple[Fakes, Path]]:
    """The three fakes in their own processes, and one CA bundle for the TLS ones."""
    with ExitStack() as stack:
        fakes = Fakes(stack.enter_context(fake_in_subprocess("apns", record=False, fast_hpack=True)),
                      stack.enter_context(fake_in_subprocess("fcm", record=False)),
                      stack.enter_context(fake_in_subprocess("webpush", record=False, decrypt=False)))
        bundle = work / "fake-cas.pem"
        bundle.write_text("".join(Path(f.info["ca_pem_path"]).read_text() for f in (fakes.apns, fakes.webpush)))
        yield fakes, bundle


# -- seeding, in-process, through clarion's store code ------------------------------------
def settings_for(data_dir: Path, database_url: str | None = None) -> Settings:
    return Settings(data_dir=data_dir, database_url=database_url, admin_token=ADMIN_TOKEN, secret_key=SECRET_KEY)


def platforms(n: int, mix: Mix) -> list[str]:
    cycle = [name for name, weight in mix for _ in range(weight)]
    return [cycle[i % len(cycle)] for i in range(n)]


async def create_app(runtime: Runtime, fakes: Fakes | None) -> str:
    """An app (credentials for the three fakes when given); returns its secret key."""
    private, public = new_vapid_keypair()
    async with runtime.engine.begin() as conn:
        created = await app_store.create_app(conn, runtime.box, "bench", private, public)
        if fakes is not None:
            app = await app_store.find_app(conn, created["id"])
            await app_store.store_credentials(conn, runtime.box, app, "apns", fakes.apns.info["credentials"])
            app = await app_store.find_app(conn, created["id"])
            await app_store.store_credentials(conn, runtime.box, app, "fcm",
                                              {"service_account": fakes.fcm.info["service_account"]})
            app = await app_store.find_app(conn, created["id"])
            await app_store.store_vapid(conn, runtime.box, app, "mailto:bench@example.com", None, None)
    return str(created["secret_key"])


async def seed_devices(runtime: Runtime, app_pk: int, kinds: list[str], subscriptions: list[Any]) -> None:
    """One user per device; tokens encrypted and hashed as the devices API stores them."""
    web = iter(subscriptions)
    stamp = datetime.now(UTC)
    for start in range(0, len(kinds), SEED_CHUNK):
        chunk = kinds[start:start + SEED_CHUNK]
        user_rows = [{"app_pk": app_pk, "user_id": f"u{start + i}", "attributes": {}, "created_at": stamp,
                      "updated_at": stamp} for i in range(len(chunk))]
        async with runtime.engine.begin() as conn:
            await conn.execute(users.insert(), user_rows)
            pks = (await conn.execute(sa.select(users.c.pk).where(
                users.c.app_pk == app_pk, users.c.user_id.in_([r["user_id"] for r in user_rows]))
                .order_by(users.c.pk))).scalars().all()
            rows = [_device_row(runtime, app_pk, pk, kind, web, stamp) for pk, kind in zip(pks, chunk, strict=True)]
            await conn.execute(devices.insert(), rows)


def _device_row(runtime: Runtime, app_pk: int, user_pk: int, platform: str, web: Iterator[Any],
                stamp: datetime) -> dict[str, Any]:
    token = subscription = None
    if platform == "ios":
        token = secrets.token_hex(32)
    elif platform == "android":
        token = "fcm-" + secrets.token_urlsafe(40)
    else:
        endpoint, p256dh, auth = next(web)
        subscription = {"endpoint": endpoint, "keys": {"p256dh": p256dh, "auth": auth}}
    address, secret = device_address(platform, token, subscription)
    return {"id": new_id("dev_"), "app_pk": app_pk, "user_pk": user_pk, "platform": platform,
            "token_hash": runtime.box.lookup_hash(f"{platform}:{address}"),
            "token_enc": runtime.box.encrypt(secret, device_context(platform)), "active": True,
            "created_at": stamp, "last_seen_at": stamp}


async def seed(settings: Settings, fakes: Fakes, n: int, mix: Mix = MIX) -> str:
    """Migrate, create the app and n devices; returns the app's secret key."""
    runtime = build_runtime(settings, announce=False)
    try:
        await upgrade(runtime.engine)
        key = await create_app(runtime, fakes)
        async with runtime.engine.connect() as conn:
            app_pk = (await conn.execute(sa.text("select max(pk) from apps"))).scalar()
        kinds = platforms(n, mix)
        subscriptions = fakes.webpush.call("subscribe", kinds.count("web")) if "web" in kinds else []
        await seed_devices(runtime, int(app_pk), kinds, subscriptions)
        return key
    finally:
        await runtime.aclose()


# -- one broadcast, timed ---------------------------------------------------------------
def broadcast(api: Proc, key: str, n: int, timeout: float) -> dict[str, Any]:
    """POST an audience-all notification; poll until nothing is queued. Returns the timing and counts."""
    auth = {"Authorization": f"Bearer {key}"}
    body = {"type": "alert", "audience": {"all": True}, "content": CONTENT}
    with httpx.Client(base_url=api.url, headers=auth, timeout=60) as http:
        started = time.perf_counter()
        response = http.post("/v1/notifications", json=body)
        response.raise_for_status()
        notification_id = response.json()["id"]
        deadline = time.monotonic() + timeout
        while True:
            view = http.get(f"/v1/notifications/{notification_id}").json()
            counts = view["counts"]
            if counts["targeted"] >= n and counts["queued"] == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"broadcast not done after {timeout:.0f} s: {counts}")
            time.sleep(0.05 if n <= 10_000 else 0.2 if n <= 20_000 else 0.5)  # small runs need fine timing
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "counts": counts}


def measured(name: str, procs: list[Proc], fakes: Fakes, run: Any) -> dict[str, Any]:
    """Run `run()` and report the rate, the CPU of every process, and peak RSS."""
    cpu_before, fake_before = [p.cpu() for p in procs], fakes.cpu()
    result = run()
    cpu = {f"{p.name}{i}": p.cpu() - before for i, (p, before) in enumerate(zip(procs, cpu_before, strict=True))}
    fake_cpu = {k: v - fake_before[k] for k, v in fakes.cpu().items()}
    counts, seconds = result["counts"], result["seconds"]
    sent = int(counts.get("sent", 0))
    clarion_cpu, all_cpu = sum(cpu.values()), sum(cpu.values()) + sum(fake_cpu.values())
    console.print(f"  {name}: {sent:,}/{counts['targeted']:,} sent in {seconds:.1f} s")
    return {"devices": int(counts["targeted"]), "sent": sent, "seconds": seconds,
            "deliveries_per_second": sent / seconds if seconds else None,
            "cpu_seconds_per_100k": all_cpu / sent * 100_000 if sent else None,
            "clarion_cpu_seconds_per_100k": clarion_cpu / sent * 100_000 if sent else None,
            "cpu_seconds": {**{f"clarion_{k}": round(v, 3) for k, v in cpu.items()},
                            **{f"fake_{k}": round(v, 3) for k, v in fake_cpu.items()}},
            "peak_rss_mb": max(p.peak_rss_mb() for p in procs if p.name != "api") if procs else None,
            "peak_rss_mb_by_process": {f"{p.name}{i}": round(p.peak_rss_mb(), 1) for i, p in enumerate(procs)},
            "counts": counts}


# -- section 3: embedded -------------------------------------------------------------------
def embedded(n: int, work: Path, profile: Path | None, mix: Mix = MIX) -> dict[str, Any]:
    data_dir = work / f"embedded-{'-'.join(name for name, _ in mix)}-{n}"
    with running_fakes(work) as (fakes, bundle):
        started = time.perf_counter()
        key = asyncio.run(seed(settings_for(data_dir), fakes, n, mix))
        console.print(f"  embedded: seeded {n:,} devices in {time.perf_counter() - started:.1f} s")
        prefix = [sys.executable, "-m", "pyinstrument", "--show-all", "-o", str(profile)] if profile else None
        with clarion("serve", data_dir, fakes.env(bundle), prefix) as serve:
            result = measured("embedded", [serve], fakes, lambda: broadcast(serve, key, n, timeout=max(120, n / 50)))
    result["mix"] = dict(mix)
    return result


# -- section 4: scaled (PostgreSQL + RabbitMQ) ------------------------------------------------
async def reset_postgres() -> str:
    """Our own database, created when missing, emptied, migrated; returns its URL."""
    from sqlalchemy.ext.asyncio import create_async_engine

    admin = create_async_engine(Settings(database_url=PG_ADMIN_URL).sqlalchemy_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        exists = (await conn.execute(sa.text("select 1 from pg_database where datname = :d"),
                                     {"d": PG_DATABASE})).scalar()
        if not exists:
            await conn.execute(sa.text(f"CREATE DATABASE {PG_DATABASE}"))
    await admin.dispose()
    url = f"postgresql://postgres@127.0.0.1:5432/{PG_DATABASE}"
    engine = create_async_engine(Settings(database_url=url).sqlalchemy_url)
    async with engine.begin() as conn:
        await conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        await conn.execute(sa.text("CREATE SCHEMA public"))
    await engine.dispose()
    return url


def rabbit_url() -> str:
    """Our own vhost when rabbitmqctl can make one (so nobody else's queues mix in); else `/`."""
    if shutil.which("rabbitmqctl"):
        listed = subprocess.run(["rabbitmqctl", "-q", "list_vhosts"], capture_output=True, text=True).stdout
        if RABBIT_VHOST not in listed.split():
            subprocess.run(["rabbitmqctl", "-q", "add_vhost", RABBIT_VHOST], capture_output=True)
            subprocess.run(["rabbitmqctl", "-q", "set_permissions", "-p", RABBIT_VHOST, "guest", ".*", ".*", ".*"],
                           capture_output=True)
        listed = subprocess.run(["rabbitmqctl", "-q", "list_vhosts"], capture_output=True, text=True).stdout
        if RABBIT_VHOST in listed.split():
            return f"amqp://guest:guest@127.0.0.1:5672/{RABBIT_VHOST}"
    return "amqp://guest:guest@127.0.0.1:5672/"


async def purge_rabbit(url: str) -> None:
    from clarion.queue.rabbitmq import RabbitBroker

    broker = RabbitBroker(url)
    await broker.start()
    try:
        await broker.purge()
    finally:
        await broker.close()


def scaled(n: int, work: Path, worker_counts: tuple[int, ...]) -> dict[str, dict[str, Any]]:
    data_dir = work / "scaled"
    database_url, queue_url = asyncio.run(reset_postgres()), rabbit_url()
    asyncio.run(purge_rabbit(queue_url))
    results = {}
    with running_fakes(work) as (fakes, bundle):
        key = asyncio.run(seed(settings_for(data_dir, database_url), fakes, n))
        env = {**fakes.env(bundle), "CLARION_DATABASE_URL": database_url, "CLARION_QUEUE_URL": queue_url}
        with clarion("api", data_dir, env) as api:
            for count in worker_counts:
                with ExitStack() as stack:
                    workers = [stack.enter_context(clarion("worker", data_dir, env)) for _ in range(count)]
                    results[f"scaled_{count}"] = measured(
                        f"scaled, {count} worker(s)", [api, *workers], fakes,
                        lambda: broadcast(api, key, n, timeout=max(120, n / 30)))
    return results


# -- section 5: fan-out memory -----------------------------------------------------------------
def seed_many_sql(n: int) -> list[str]:
    """n users with one device each, in two INSERT … SELECTs (fan-out never decrypts a token)."""
    series = f"WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n})"
    return [
        f"{series} INSERT INTO users (app_pk, user_id, attributes, created_at, updated_at) "
        "SELECT 1, 'u' || i, '{}', '2026-01-01 00:00:00', '2026-01-01 00:00:00' FROM s",
        "INSERT INTO devices (id, app_pk, user_pk, platform, token_hash, token_enc, active, created_at, last_seen_at) "
        "SELECT 'dev_' || pk, 1, pk, CASE pk % 3 WHEN 0 THEN 'ios' WHEN 1 THEN 'android' ELSE 'web' END, "
        "'h' || pk, randomblob(48), 1, '2026-01-01 00:00:00', '2026-01-01 00:00:00' FROM users",
    ]


async def seed_fanout(data_dir: Path, n: int) -> None:
    runtime = build_runtime(settings_for(data_dir), announce=False)
    try:
        await upgrade(runtime.engine)
        await create_app(runtime, None)
        async with runtime.engine.begin() as conn:
            for statement in seed_many_sql(n):
                await conn.execute(sa.text(statement))
            now = datetime.now(UTC)
            await conn.execute(notifications.insert().values(
                id=new_id("ntf_"), app_pk=1, type="alert", category=None, status="accepted", send_at=None,
                request={"type": "alert", "audience": {"all": True}, "content": CONTENT, "ttl": 86400},
                fanout_cursor=None, fanout_done=False, created_at=now))
    finally:
        await runtime.aclose()


async def fan_out_child(data_dir: Path) -> dict[str, Any]:
    """Inside the measured process: clarion's FanOut on the embedded broker, to the end."""
    from clarion.dispatch.fanout import FanOut
    from clarion.queue.embedded import EmbeddedBroker

    runtime = build_runtime(settings_for(data_dir), announce=False)
    started = time.perf_counter()
    try:
        fanout = FanOut(runtime.engine, EmbeddedBroker(runtime.engine))
        while await fanout.run_once():
            pass
        async with runtime.engine.connect() as conn:
            made = (await conn.execute(sa.text("select count(*) from deliveries"))).scalar()
    finally:
        await runtime.aclose()
    return {"deliveries": made, "seconds": time.perf_counter() - started,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def fanout_memory(n: int, work: Path) -> dict[str, Any]:
    data_dir = work / f"fanout-{n}"
    started = time.perf_counter()
    asyncio.run(seed_fanout(data_dir, n))
    seeded = time.perf_counter() - started
    done = subprocess.run([sys.executable, __file__, "--fanout-child", str(data_dir)], check=True,
                          capture_output=True, text=True, timeout=7200, env={**os.environ, "PYTHONPATH": str(ROOT)})
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["deliveries"] != n:
        raise RuntimeError(f"fan-out made {result['deliveries']} deliveries for {n} devices")
    console.print(f"  fan-out {n:,}: seeded in {seeded:.1f} s, fanned out in {result['seconds']:.1f} s, "
                  f"peak RSS {result['peak_rss_mb']:.0f} MB")
    shutil.rmtree(data_dir, ignore_errors=True)
    return {**result, "seed_seconds": seeded}


def fanout_pair(small: int, large: int, work: Path) -> dict[str, Any]:
    low, high = fanout_memory(small, work), fanout_memory(large, work)
    return {"devices_small": small, "devices_large": large, "peak_rss_mb_10k": low["peak_rss_mb"],
            "peak_rss_mb_1m": high["peak_rss_mb"], "ratio": high["peak_rss_mb"] / low["peak_rss_mb"],
            "seconds_small": low["seconds"], "seconds_large": high["seconds"],
            "fanout_deliveries_per_second_large": high["deliveries"] / high["seconds"]}


# -- output ---------------------------------------------------------------------------------
def print_table(results: dict[str, Any]) -> None:
    table = Table(title="Clarion end to end through the fakes (bench/pipeline.py)")
    for header in ("run", "devices", "sent", "seconds", "deliveries/s", "CPU s/100k (all)", "clarion CPU s/100k",
                   "peak RSS MB"):
        table.add_column(header, justify="left" if header == "run" else "right")
    for key in ("embedded", "embedded_ios", "embedded_ios_large", "scaled_1", "scaled_2"):
        row = results.get(key)
        if row:
            table.add_row(key, f"{row['devices']:,}", f"{row['sent']:,}", f"{row['seconds']:.1f}",
                          f"{row['deliveries_per_second']:,.0f}", f"{row['cpu_seconds_per_100k']:.1f}",
                          f"{row['clarion_cpu_seconds_per_100k']:.1f}", f"{row['peak_rss_mb']:.0f}")
    memory = results.get("fanout_memory")
    if memory:
        table.add_row(f"fan-out {memory['devices_small']:,} → {memory['devices_large']:,}", "", "", "", "", "", "",
                      f"{memory['peak_rss_mb_10k']:.0f} → {memory['peak_rss_mb_1m']:.0f} "
                      f"(×{memory['ratio']:.2f})")
    Console(width=160).print(table)


def main() -> int:
    parser = argparse.ArgumentParser(description="Clarion end to end through the fakes; fan-out memory.")
    parser.add_argument("--size", type=int, default=100_000, help="devices in the broadcast")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--quick", action="store_true", help="tiny fan-out memory pair (the smoke test)")
    parser.add_argument("--only", default="embedded,ios,ios_large,scaled,fanout", help="comma-separated parts to run")
    parser.add_argument("--ios-size", type=int, default=None,
                        help="devices in the iOS-only embedded broadcast (Parse Server's; default 5000, quick 200)")
    parser.add_argument("--fanout", default=None, help="SMALL,LARGE devices for the fan-out memory pair")
    parser.add_argument("--mix", default=None, help="platform weights, e.g. ios=1,android=1,web=1 (the default)")
    parser.add_argument("--profile", action="store_true", help="run the embedded serve under pyinstrument")
    parser.add_argument("--fanout-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fanout_child:
        print(json.dumps(asyncio.run(fan_out_child(args.fanout_child))))
        return 0
    mix = tuple((name, int(weight)) for name, weight in (part.split("=") for part in args.mix.split(","))) \
        if args.mix else MIX
    ios_size = args.ios_size or (200 if args.quick else 5_000)
    parts = set(args.only.split(","))
    small, large = (int(x) for x in (args.fanout or ("1000,20000" if args.quick else "10000,1000000")).split(","))
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "size": args.size, "quick": args.quick}
    with tempfile.TemporaryDirectory(prefix="clarion-pipeline-") as tmp:
        work = Path(tmp)
        if "embedded" in parts:
            results["embedded"] = embedded(args.size, work, args.out / "profile-embedded.txt" if args.profile else None,
                                           mix)
        if "ios" in parts:
            results["embedded_ios"] = embedded(ios_size, work, None, IOS_ONLY)
        if "ios_large" in parts:
            results["embedded_ios_large"] = embedded(args.size, work, None, IOS_ONLY)
        if "scaled" in parts:
            results.update(scaled(args.size, work, (1, 2)))
        if "fanout" in parts:
            results["fanout_memory"] = fanout_pair(small, large, work)
    (args.out / "pipeline.json").write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
