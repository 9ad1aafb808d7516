"""Crash tests: SIGKILL Clarion in the middle of a 20,000-device campaign,
start it again, and check that nothing accepted was lost (DESIGN.md,
Invariants): every delivery id reached a provider at least once, every
delivery is final, the counts add up. Duplicates are reported.

The fake providers run in their own process (they must outlive the one we
kill, and must not share its CPU). Devices are seeded in bulk through the
store's tables with the deployment's own keys, so seeding takes a second,
not minutes of API calls. A missing PostgreSQL or RabbitMQ fails the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from clarion import constants as c
from clarion.config import Settings
from clarion.runtime import build_runtime
from clarion.security import new_id
from clarion.store.apps import find_app
from clarion.store.devices import device_context
from clarion.store.tables import deliveries, devices, notifications, users
from tests.conftest import ADMIN, ADMIN_TOKEN, SECRET_KEY, postgres_database_url, reset_postgres
from tests.rabbitmq import own_vhost
from tests.server import ClarionProcess, running_clarion

pytestmark = pytest.mark.slow

DEVICES = 20_000
KILL_AFTER = 3_000  # pushes the fakes have accepted when the SIGKILL comes
FINISH_SECONDS = 100
CRASH_DATABASE = "clarion_crash"  # our own database on the test server: the API suite truncates `test`
BODY = {"type": "alert", "content": {"title": "crash", "body": "test"}, "audience": {"all": True}}
# At most what the killed process had in flight: every platform's concurrent jobs.
DUPLICATE_BOUND = 2 * c.PLATFORM_CONCURRENCY * max(c.DELIVERIES_PER_JOB.values())


# -- fake providers in another process -------------------------------------------------


class FakeProviders:
    """Fake APNs and FCM in a child process; `ids()` lists every delivery id they accepted."""

    def __init__(self, conn: Connection, info: dict[str, Any]) -> None:
        self._conn, self.info = conn, info

    def call(self, command: str) -> Any:
        self._conn.send(command)
        return self._conn.recv()

    def accepted(self) -> int:
        return int(self.call("count"))

    def ids(self) -> list[str]:
        return list(self.call("ids"))

    def env(self) -> dict[str, str]:
        return {
            "CLARION_APNS_URL": self.info["apns_url"],
            "CLARION_FCM_URL": self.info["fcm_url"],
            "CLARION_CA_FILE": self.info["ca_file"],
            "CLARION_ALLOW_LOCAL_ENDPOINTS": "true",
            "CLARION_LOG_LEVEL": "WARNING",
        }


@contextlib.contextmanager
def fake_providers() -> Iterator[FakeProviders]:
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_fakes_main, args=(child,), daemon=True)
    process.start()
    try:
        if not parent.poll(60):
            raise RuntimeError("the fake providers did not start")
        yield FakeProviders(parent, parent.recv())
    finally:
        with contextlib.suppress(OSError):
            parent.send("stop")
        process.join(10)
        if process.is_alive():
            process.kill()


def _fakes_main(conn: Connection) -> None:
    try:
        import uvloop  # the fakes must not be the bottleneck
    except ImportError:
        asyncio.run(_fakes_loop(conn))
    else:
        uvloop.run(_fakes_loop(conn))


async def _fakes_loop(conn: Connection) -> None:
    from tests.fakes import FakeAPNs, FakeFCM

    loop = asyncio.get_running_loop()
    async with FakeAPNs() as apns, FakeFCM() as fcm:
        conn.send(
            {
                "apns_url": apns.url,
                "fcm_url": fcm.url,
                "ca_file": str(apns.ca_pem_path),
                "apns": apns.credentials(),
                "fcm": fcm.service_account(),
            }
        )
        while (command := await loop.run_in_executor(None, conn.recv)) != "stop":
            if command == "count":
                conn.send(len(apns.received) + len(fcm.received))
            elif command == "ids":
                conn.send(
                    [p.headers["apns-id"] for p in apns.received]
                    + [m["data"]["clarion_delivery_id"] for m in fcm.received]
                )


# -- seeding -------------------------------------------------------------------------------


def create_app(url: str, fakes: FakeProviders) -> tuple[str, dict[str, str]]:
    """An app with APNs and FCM credentials for the fakes: (app id, secret-key header)."""
    with httpx.Client(base_url=url, timeout=30) as http:
        created = http.post("/v1/apps", json={"name": "crash"}, headers=ADMIN)
        assert created.status_code == 201, created.text
        app_id, auth = created.json()["id"], {"Authorization": f"Bearer {created.json()['secret_key']}"}
        for provider, body in (("apns", fakes.info["apns"]), ("fcm", {"service_account": fakes.info["fcm"]})):
            put = http.put(f"/v1/apps/{app_id}/credentials/{provider}", json=body, headers=auth)
            assert put.status_code == 200, put.text
    return app_id, auth


def settings_for(data_dir: Path, database_url: str | None = None) -> Settings:
    return Settings(data_dir=data_dir, database_url=database_url, admin_token=ADMIN_TOKEN, secret_key=SECRET_KEY)


async def seed_devices(settings: Settings, app_id: str, count: int) -> None:
    """`count` users with one device each, half iOS and half Android, in one transaction."""
    runtime = build_runtime(settings, announce=False)
    try:
        async with runtime.engine.begin() as conn:
            app = await find_app(conn, app_id)
            assert app is not None
            stamp = datetime.now(UTC)
            user_rows = [
                {"app_pk": app.pk, "user_id": f"u{n}", "attributes": {}, "created_at": stamp, "updated_at": stamp}
                for n in range(count)
            ]
            insert = users.insert().returning(users.c.pk, sort_by_parameter_order=True)
            user_pks = [row.pk for row in await conn.execute(insert, user_rows)]
            device_rows = [_device_row(runtime.box, app.pk, pk, n, stamp) for n, pk in enumerate(user_pks)]
            await conn.execute(devices.insert(), device_rows)
    finally:
        await runtime.aclose()


def _device_row(box: Any, app_pk: int, user_pk: int, n: int, stamp: datetime) -> dict[str, Any]:
    platform = "ios" if n % 2 else "android"
    token = secrets.token_hex(32) if platform == "ios" else "fcm-" + secrets.token_urlsafe(40)
    return {
        "id": new_id("dev_"),
        "app_pk": app_pk,
        "user_pk": user_pk,
        "platform": platform,
        "token_hash": box.lookup_hash(f"{platform}:{token}"),
        "token_enc": box.encrypt(token.encode(), device_context(platform)),
        "active": True,
        "created_at": stamp,
        "last_seen_at": stamp,
    }


# -- the campaign ---------------------------------------------------------------------------


def post_campaign(url: str, auth: dict[str, str]) -> str:
    response = httpx.post(url + "/v1/notifications", json=BODY, headers=auth, timeout=30)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def kill_mid_campaign(victim: ClarionProcess, fakes: FakeProviders, at: int = KILL_AFTER, timeout: float = 60) -> int:
    """SIGKILL `victim` once the fakes have accepted `at` pushes; returns how many they had."""
    deadline = time.monotonic() + timeout
    while (accepted := fakes.accepted()) < at:
        assert time.monotonic() < deadline, (
            f"only {accepted} pushes after {timeout} s:\n{victim.log.read_text()[-3000:]}"
        )
        assert victim.process.poll() is None, victim.log.read_text()[-3000:]
        time.sleep(0.02)
    victim.kill()
    return accepted


def wait_completed(
    url: str, auth: dict[str, str], notification_id: str, timeout: float = FINISH_SECONDS
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        view = httpx.get(f"{url}/v1/notifications/{notification_id}", headers=auth, timeout=30).json()
        if view["status"] == "completed" or time.monotonic() > deadline:
            return view  # type: ignore[no-any-return]
        time.sleep(0.25)


@dataclass
class Outcome:
    statuses: Counter[str]
    delivery_ids: set[str]
    received: Counter[str]

    @property
    def lost(self) -> set[str]:
        return self.delivery_ids - set(self.received)

    @property
    def duplicates(self) -> int:
        return sum(self.received.values()) - len(self.received)


async def outcome_of(settings: Settings, notification_id: str, fakes: FakeProviders) -> Outcome:
    engine = create_async_engine(settings.sqlalchemy_url)
    try:
        async with engine.connect() as conn:
            pk = (
                await conn.execute(sa.select(notifications.c.pk).where(notifications.c.id == notification_id))
            ).scalar_one()
            rows = (
                await conn.execute(
                    sa.select(deliveries.c.id, deliveries.c.status).where(deliveries.c.notification_pk == pk)
                )
            ).all()
    finally:
        await engine.dispose()
    return Outcome(Counter(r.status for r in rows), {r.id for r in rows}, Counter(fakes.ids()))


async def fanned_out(settings: Settings, notification_id: str) -> str:
    """How far fan-out had gone (read just after the kill)."""
    engine = create_async_engine(settings.sqlalchemy_url)
    try:
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(notifications.c.pk, notifications.c.fanout_done).where(
                        notifications.c.id == notification_id
                    )
                )
            ).one()
            written = (
                await conn.execute(sa.select(sa.func.count()).where(deliveries.c.notification_pk == row.pk))
            ).scalar_one()
    finally:
        await engine.dispose()
    return f"{written} deliveries written, fan-out {'done' if row.fanout_done else 'unfinished'}"


def check(view: dict[str, Any], outcome: Outcome, label: str, accepted_at_kill: int, seconds: float) -> None:
    counts = view["counts"]
    print(
        f"\n[{label}] stopped at {accepted_at_kill} accepted; {outcome.duplicates} duplicates of {DEVICES} "
        f"({100 * outcome.duplicates / DEVICES:.2f}%); campaign {seconds:.1f} s; counts {counts}"
    )
    assert accepted_at_kill < DEVICES, "the kill came after the campaign had ended"
    assert view["status"] == "completed", view
    assert counts["targeted"] == DEVICES == len(outcome.delivery_ids)
    assert sum(v for k, v in counts.items() if k != "targeted") == counts["targeted"]
    assert dict(outcome.statuses) == {"sent": DEVICES}, outcome.statuses
    assert counts["sent"] == DEVICES
    assert not outcome.lost, f"{len(outcome.lost)} deliveries never reached a provider"
    assert set(outcome.received) <= outcome.delivery_ids  # nothing foreign
    assert outcome.duplicates <= DUPLICATE_BOUND


# -- embedded: `clarion serve` on SQLite -------------------------------------------------------


def test_serve_killed_mid_campaign(tmp_path: Path) -> None:
    """SIGKILL `clarion serve` during a 20,000-device broadcast; a new `serve`
    on the same data dir finishes it: 0 lost, counts add up, few duplicates."""
    with fake_providers() as fakes:
        env = fakes.env()
        with running_clarion("serve", tmp_path, **env) as first:
            _app_id, auth = create_app(first.url, fakes)
            asyncio.run(seed_devices(settings_for(tmp_path), _app_id, DEVICES))
            started = time.monotonic()
            notification_id = post_campaign(first.url, auth)
            accepted = kill_mid_campaign(first, fakes)
        print("\n[serve] at the kill:", asyncio.run(fanned_out(settings_for(tmp_path), notification_id)))
        with running_clarion("serve", tmp_path, **env) as second:
            view = wait_completed(second.url, auth, notification_id)
        seconds = time.monotonic() - started
        check(view, asyncio.run(outcome_of(settings_for(tmp_path), notification_id, fakes)), "serve", accepted, seconds)


# -- scaled: `clarion api` + `clarion worker` on PostgreSQL and RabbitMQ -------------------------


def crash_database_url() -> str:
    """`clarion_crash` on the test server: created when missing, emptied and migrated."""
    return reset_postgres(postgres_database_url(CRASH_DATABASE))


@contextlib.contextmanager
def scaled_env(fakes: FakeProviders) -> Iterator[dict[str, str]]:
    database_url = crash_database_url()
    with own_vhost("clarion_crash") as amqp_url:
        yield {**fakes.env(), "CLARION_DATABASE_URL": database_url, "CLARION_QUEUE_URL": amqp_url}


@pytest.mark.postgres
@pytest.mark.rabbitmq
def test_worker_killed_mid_campaign(tmp_path: Path) -> None:
    """SIGKILL `clarion worker` during a 20,000-device broadcast on PostgreSQL +
    RabbitMQ; a new worker finishes it: 0 lost, counts add up, few duplicates."""
    with fake_providers() as fakes, scaled_env(fakes) as env:
        settings = settings_for(tmp_path, env["CLARION_DATABASE_URL"])
        with running_clarion("api", tmp_path, **env) as api:
            app_id, auth = create_app(api.url, fakes)
            asyncio.run(seed_devices(settings, app_id, DEVICES))
            with running_clarion("worker", tmp_path / "w1", **env) as worker:
                started = time.monotonic()
                notification_id = post_campaign(api.url, auth)
                accepted = kill_mid_campaign(worker, fakes)
            print("\n[worker] at the kill:", asyncio.run(fanned_out(settings, notification_id)))
            with running_clarion("worker", tmp_path / "w2", **env):
                view = wait_completed(api.url, auth, notification_id)
            seconds = time.monotonic() - started
        check(view, asyncio.run(outcome_of(settings, notification_id, fakes)), "worker", accepted, seconds)
