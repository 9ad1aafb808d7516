"""What every provider client takes and gives back.

A provider turns `Push`es into requests on its own wire format and answers
one `Outcome` per push, in order. Nothing outside `providers/` knows a wire
format or sees a library's exception: they are translated here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Platform = Literal["ios", "android", "web"]
Priority = Literal["high", "normal"]


@dataclass(frozen=True, slots=True)
class WebKeys:
    p256dh: str  # base64url, uncompressed P-256 point
    auth: str  # base64url, 16 bytes


@dataclass(frozen=True, slots=True)
class Content:
    """What the user sees, already localized and rendered for one user."""

    title: str | None = None
    body: str | None = None
    image_url: str | None = None
    url: str | None = None
    data: dict[str, str] = field(default_factory=dict)
    actions: list[dict[str, str]] = field(default_factory=list)
    sound: str | None = None
    badge: int | None = None


@dataclass(frozen=True, slots=True)
class Push:
    """One delivery, ready for the wire."""

    delivery_id: str  # a UUID; APNs carries it as apns-id
    token: str  # APNs/FCM registration token, or the Web Push endpoint
    content: Content
    notification_type: str = "alert"  # alert | promotional | transactional
    category: str | None = None
    priority: Priority = "high"
    ttl: int = 86400  # seconds left to live
    expires_at: int | None = None  # unix time; APNs apns-expiration
    collapse_key: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)  # platforms.<p>
    web_keys: WebKeys | None = None


@dataclass(frozen=True, slots=True)
class Sent:
    """The provider accepted the push."""


@dataclass(frozen=True, slots=True)
class Retry:
    """A transient failure: try again, not before `after` seconds if given."""

    reason: str
    error: str = ""
    after: float | None = None


@dataclass(frozen=True, slots=True)
class Failed:
    """A permanent rejection. `invalid_token` deactivates the device;
    `credentials_invalid` flags the app's credentials for this provider."""

    reason: str
    error: str = ""
    invalid_token: bool = False
    credentials_invalid: bool = False


Outcome = Sent | Retry | Failed


class Provider(Protocol):
    """A long-lived client for one app's credentials on one platform."""

    platform: Platform

    async def send(self, pushes: Sequence[Push]) -> list[Outcome]:
        """Send every push concurrently; one outcome per push, same order.
        Never raises for a provider or network fault: that is a `Retry`."""
        ...

    async def aclose(self) -> None:
        """Close connections."""
        ...
