"""TLS contexts for outbound provider connections.

Each client builds its own context: contexts carry session caches and ALPN
settings, and sharing one between an HTTP/2 client (APNs) and HTTP/1.1
clients (FCM, Web Push) would let one's ALPN leak into the other's.
"""

from __future__ import annotations

import ssl
from pathlib import Path


def client_ssl_context(ca_file: Path | str | None = None, *, alpn: list[str] | None = None) -> ssl.SSLContext:
    """A verifying client context: the system's CAs plus `ca_file` (CLARION_CA_FILE).

    `alpn` is offered as given (APNs needs `["h2"]`). Raises `FileNotFoundError`
    or `ssl.SSLError` when `ca_file` is missing or not PEM.
    """
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=str(ca_file))
    if alpn:
        context.set_alpn_protocols(alpn)
    return context
