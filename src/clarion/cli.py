"""The `clarion` command: wires settings, logging and the parts together."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

import sqlalchemy as sa
import typer
import uvicorn
from prometheus_client import start_http_server
from rich.console import Console
from rich.progress import MofNCompleteColumn, Progress
from rich.table import Table

from clarion.config import Settings
from clarion.keyring import REFRESH_SECONDS, Keyring
from clarion.logs import configure_logging
from clarion.runtime import Runtime, build_runtime
from clarion.security import new_master_key
from clarion.store import apps as app_store
from clarion.store.migrate import upgrade
from clarion.store.rotation import count_secret_rows, rotate
from clarion.store.tables import apps

app = typer.Typer(help="Clarion: self-hosted push notifications.", no_args_is_help=True)
apps_cli = typer.Typer(help="Create and list apps.", no_args_is_help=True)
keys_cli = typer.Typer(help="Create and revoke an app's API keys.", no_args_is_help=True)
app.add_typer(apps_cli, name="apps")
app.add_typer(keys_cli, name="keys")
console = Console()


def _runtime() -> Runtime:
    try:
        settings = Settings()
    except ValueError as exc:
        console.print(f"[red]Configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc
    configure_logging(settings.log_level)
    return build_runtime(settings)


async def _upgrade(runtime: Runtime) -> None:
    """Migrate, then drop the pooled connections: they belong to this event
    loop, and the server runs in another (asyncpg refuses a foreign loop)."""
    await upgrade(runtime.engine)
    await runtime.engine.dispose()


def _serve(runtime: Runtime, with_pipeline: bool) -> None:
    from clarion.api.app import create_app

    asyncio.run(_upgrade(runtime))
    if with_pipeline:
        from clarion.dispatch.service import Pipeline

        runtime.pipeline = Pipeline(runtime)
    settings = runtime.settings
    uvicorn.run(
        create_app(runtime),
        host=settings.host,
        port=settings.port,
        ssl_certfile=str(settings.tls_cert_file) if settings.tls_cert_file else None,
        ssl_keyfile=str(settings.tls_key_file) if settings.tls_key_file else None,
        log_config=None,  # our JSON logging, set up in _runtime
        log_level=settings.log_level.lower(),
        access_log=False,  # RequestLogMiddleware writes one line per request
    )


@app.command()
def serve() -> None:
    """Run everything in one process: API, fan-out and workers (embedded shape)."""
    _serve(_runtime(), with_pipeline=True)


@app.command()
def api() -> None:
    """Run the HTTP API only (scaled shape; run `clarion worker` beside it)."""
    _serve(_runtime(), with_pipeline=False)


@app.command()
def worker() -> None:
    """Run fan-out and delivery workers only (scaled shape)."""
    from clarion.dispatch.service import run_worker

    runtime = _runtime()
    asyncio.run(upgrade(runtime.engine))
    # Workers serve no API; Prometheus scrapes their /metrics on CLARION_PORT.
    start_http_server(runtime.settings.port, addr=runtime.settings.host)
    asyncio.run(run_worker(runtime.settings))


@app.command()
def migrate() -> None:
    """Bring the database schema up to date."""
    runtime = _runtime()
    asyncio.run(upgrade(runtime.engine))
    console.print("[green]The database schema is up to date.[/green]")


async def _with_conn(runtime: Runtime, work: Any) -> Any:
    await upgrade(runtime.engine)
    try:
        async with runtime.engine.begin() as conn:
            return await work(conn)
    finally:
        await runtime.aclose()


@apps_cli.command("create")
def apps_create(name: Annotated[str, typer.Argument(help="a name for the app")]) -> None:
    """Create an app and print its keys (shown only now)."""
    from clarion.domain.vapid import new_vapid_keypair

    runtime = _runtime()
    private, public = new_vapid_keypair()
    created = asyncio.run(
        _with_conn(runtime, lambda conn: app_store.create_app(conn, runtime.box, name, private, public))
    )
    table = Table("field", "value", title="New app — keep the keys; they are not shown again")
    for field, value in created.items():
        table.add_row(field, str(value))
    console.print(table)


@apps_cli.command("list")
def apps_list() -> None:
    """List the apps."""
    runtime = _runtime()

    async def rows(conn: Any) -> list[Any]:
        return list(
            (await conn.execute(sa.select(apps.c.id, apps.c.name, apps.c.created_at).order_by(apps.c.pk))).all()
        )

    table = Table("id", "name", "created")
    for row in asyncio.run(_with_conn(runtime, rows)):
        table.add_row(row.id, row.name, row.created_at.isoformat())
    console.print(table)


async def _app_pk(conn: Any, app_id: str) -> int:
    found = await app_store.find_app(conn, app_id)
    if found is None:
        console.print(f"[red]No app {app_id}.[/red] See `clarion apps list`.")
        raise typer.Exit(1)
    return int(found.pk)


@keys_cli.command("create")
def keys_create(
    app_id: Annotated[str, typer.Argument(help="the app's id")],
    kind: Annotated[str, typer.Option(help="secret or publishable")] = "secret",
) -> None:
    """Create a new key for an app and print it (shown only now)."""
    if kind not in ("secret", "publishable"):
        console.print("[red]--kind must be secret or publishable.[/red]")
        raise typer.Exit(2)
    runtime = _runtime()

    async def create(conn: Any) -> tuple[str, str]:
        return await app_store.create_key(conn, await _app_pk(conn, app_id), kind)

    key_id, key = asyncio.run(_with_conn(runtime, create))
    console.print(f"key id: {key_id}\n{kind} key (shown once): {key}")


@keys_cli.command("revoke")
def keys_revoke(
    app_id: Annotated[str, typer.Argument(help="the app's id")],
    key_id: Annotated[str, typer.Argument(help="the key's id")],
) -> None:
    """Revoke a key at once."""
    runtime = _runtime()

    async def revoke(conn: Any) -> bool:
        return await app_store.revoke_key(conn, await _app_pk(conn, app_id), key_id)

    if not asyncio.run(_with_conn(runtime, revoke)):
        console.print(f"[red]No active key {key_id} in app {app_id}.[/red]")
        raise typer.Exit(1)
    console.print(f"Revoked {key_id}.")


@app.command("rotate-key")
def rotate_key() -> None:
    """Re-encrypt every stored secret under a new master key, online.

    With keys in the data dir (CLARION_SECRET_KEY unset) a new key is made and
    installed; running processes pick it up within seconds, and the old one
    keeps working until every row is moved. With CLARION_SECRET_KEY set,
    first restart every process with the new key in CLARION_SECRET_KEY and the
    old one in CLARION_PREVIOUS_SECRET_KEYS, then run this."""
    settings = _runtime().settings
    keyring = Keyring(settings)
    if keyring.from_files:
        keyring.install_new_primary(new_master_key())
        time.sleep(REFRESH_SECONDS * 1.5)  # running processes now encrypt under the new key
    elif not settings.previous_secret_keys:
        console.print(
            "[red]CLARION_SECRET_KEY is set, so the new key comes from you:[/red] restart every Clarion process "
            "with the new key in CLARION_SECRET_KEY and the old one in CLARION_PREVIOUS_SECRET_KEYS, run "
            "`clarion rotate-key` again, then remove CLARION_PREVIOUS_SECRET_KEYS."
        )
        raise typer.Exit(2)
    moved = asyncio.run(_rotate_all(build_runtime(settings, announce=False)))
    if keyring.from_files:
        keyring.drop_previous()
    console.print(f"[green]Re-encrypted {moved} rows; every secret is under the new master key.[/green]")


async def _rotate_all(runtime: Runtime) -> int:
    await upgrade(runtime.engine)
    total = await count_secret_rows(runtime.engine)
    moved = 0
    try:
        with Progress(*Progress.get_default_columns(), MofNCompleteColumn(), console=console) as progress:
            task = progress.add_task("re-encrypting secrets", total=total)
            async for seen, changed in rotate(runtime.engine, runtime.box):
                moved += changed
                progress.advance(task, seen)
    finally:
        await runtime.aclose()
    return moved
