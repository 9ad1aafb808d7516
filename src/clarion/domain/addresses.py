"""Which network addresses a Web Push endpoint may not point at (SSRF guard)."""

from __future__ import annotations

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def is_forbidden_address(address: IPAddress) -> bool:
    """Loopback, private, link-local, unspecified, or IPv4-mapped to any address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return True
    return (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_unspecified
        or address.is_multicast
        or address.is_reserved
    )


def literal_address(host: str) -> IPAddress | None:
    """The address a URL host spells literally (`[::1]` included), else None."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
