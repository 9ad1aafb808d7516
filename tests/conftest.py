"""Shared fixtures: a Clarion API on SQLite and on the machine's PostgreSQL.

The API suite runs once per backend. A PostgreSQL that is not there is a
failure, never a skip."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from clarion.api.app import create_app
from clarion.config import Settings
from clarion.runtime import Runtime, build_runtime
from clarion.store.migrate import upgrade
from clarion.store.tables import metadata

ADMIN_TOKEN = "adm_test-admin-token"
SECRET_KEY = "00" * 32
PG_URL = os.environ.get("CLARION_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


def run_in_thread(coro: Awaitable[Any]) -> Any:
    """Session set-up may be first needed inside a test's running loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()  # type: ignore[arg-type]


def make_settings(data_dir: Path, database_url: str | None, **extra: Any) -> Settings:
    values: dict[str, Any] = {"admin_token": ADMIN_TOKEN, "secret_key": SECRET_KEY, "allow_local_endpoints": False}
    return Settings(data_dir=data_dir, database_url=database_url, **{**values, **extra})


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file; each test gets a copy (migrations run once)."""
    data_dir = tmp_path_factory.mktemp("sqlite-template")
    runtime = build_runtime(make_settings(data_dir, None), announce=False)

    async def migrate() -> None:
        await upgrade(runtime.engine)
        await runtime.engine.dispose()

    run_in_thread(migrate())
    return data_dir / "clarion.db"


def postgres_database_url(name: str) -> str:
    """The URL of database `name` on the server the tests use."""
    return PG_URL.rsplit("/", 1)[0] + "/" + name


async def _create_database_if_missing(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    admin = create_async_engine(Settings(database_url=PG_URL).sqlalchemy_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            found = await conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
            if found.first() is None:
                await conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        await admin.dispose()


def reset_postgres(url: str) -> str:
    """Create the database at `url` when missing, empty it and migrate it; returns the url."""

    async def reset() -> None:
        await _create_database_if_missing(url)
        engine = create_async_engine(Settings(database_url=url).sqlalchemy_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(sa.text("DROP SCHEMA public CASCADE"))
                await conn.execute(sa.text("CREATE SCHEMA public"))
            await upgrade(engine)
        finally:
            await engine.dispose()

    run_in_thread(reset())
    return url


@pytest.fixture(scope="session")
def postgres_migrated() -> str:
    """The test database, emptied and migrated once per session."""
    return reset_postgres(PG_URL)


async def truncate_postgres(runtime: Runtime) -> None:
    names = ", ".join(table.name for table in metadata.sorted_tables)
    async with runtime.engine.begin() as conn:
        await conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def runtime(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> AsyncIterator[Runtime]:
    """A Runtime on a fresh, migrated database of each backend."""
    if request.param == "sqlite":
        shutil.copy(sqlite_template, tmp_path / "clarion.db")
        rt = build_runtime(make_settings(tmp_path, None), announce=False)
    else:
        url = request.getfixturevalue("postgres_migrated")
        rt = build_runtime(make_settings(tmp_path, url), announce=False)
        await truncate_postgres(rt)
    yield rt
    await rt.aclose()


@pytest.fixture
async def client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://clarion.test") as http:
        yield http


@dataclass
class AppKeys:
    id: str
    name: str
    secret_key: str
    publishable_key: str
    key_id: str
    vapid_public_key: str

    @property
    def secret(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret_key}"}

    @property
    def publishable(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.publishable_key}"}


ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def make_app(client: httpx.AsyncClient) -> Callable[..., Awaitable[AppKeys]]:
    """Creates an app through the API and returns its keys."""

    async def make(name: str = "test app") -> AppKeys:
        response = await client.post("/v1/apps", json={"name": name}, headers=ADMIN)
        assert response.status_code == 201, response.text
        return AppKeys(**response.json())

    return make


@pytest.fixture
async def app_keys(make_app: Callable[..., Awaitable[AppKeys]]) -> AppKeys:
    return await make_app()
