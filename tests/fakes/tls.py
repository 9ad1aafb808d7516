"""A throwaway certificate authority for the fakes: servers on 127.0.0.1 whose
certificates the clients verify through CLARION_CA_FILE, as in production."""

from __future__ import annotations

import ssl
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import trustme


@lru_cache(maxsize=1)
def test_ca() -> trustme.CA:
    """One CA per process (its key generation is the slow part)."""
    return trustme.CA()


@lru_cache(maxsize=1)
def ca_pem_path() -> Path:
    """The CA certificate as a PEM file, for CLARION_CA_FILE / client_ssl_context."""
    path = Path(tempfile.mkdtemp(prefix="clarion-fake-ca-")) / "ca.pem"
    test_ca().cert_pem.write_to_path(str(path))
    return path


def server_ssl_context(alpn: list[str] | None = None) -> ssl.SSLContext:
    """A server context for 127.0.0.1 and localhost, signed by `test_ca()`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    test_ca().issue_cert("127.0.0.1", "localhost").configure_cert(context)
    if alpn:
        context.set_alpn_protocols(alpn)
    return context


class AiohttpServer:
    """One aiohttp app on a free loopback port (TLS with the throwaway CA by
    default): the start/stop and context-manager plumbing the HTTP/1.1 fakes share."""

    def __init__(self) -> None:
        self._runner: Any = None
        self.port = 0

    async def serve(self, app: Any, tls: bool = True) -> None:
        from aiohttp import web

        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=server_ssl_context() if tls else None)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> Any:
        return await self.start()  # type: ignore[attr-defined]

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def ca_pem_path(self) -> Path:
        return ca_pem_path()
