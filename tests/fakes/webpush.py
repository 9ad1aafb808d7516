"""A fake Web Push service (RFC 8030) over TLS on 127.0.0.1.

    async with FakeWebPush() as push_service:
        endpoint, keys = push_service.subscribe()      # a browser's subscription
        ...
        push_service.received[0].payload               # decrypted with the subscription's key

Each request's VAPID header is verified (ES256 signature with `k`, `aud` = the
endpoint's origin, `exp` within 24 h, `sub` a mailto:/https: URL) and its body
decrypted (RFC 8291 aes128gcm) with the subscription's private key and auth
secret; failures get the status a push service would give.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import http_ece
import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from clarion.providers.base import WebKeys
from tests.fakes.scripting import take_scripted
from tests.fakes.tls import AiohttpServer

_VAPID = re.compile(r"^vapid t=([^,\s]+),\s*k=([A-Za-z0-9_-]+)$")
_TOPIC = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Subscription:
    private_key: ec.EllipticCurvePrivateKey
    auth: bytes


@dataclass
class ReceivedWebPush:
    subscription_id: str
    headers: dict[str, str]
    payload: dict[str, Any]


@dataclass
class WebScripted:
    status: int
    retry_after: str | None = None
    times: int | None = None


@dataclass
class _State:
    per_subscription: dict[str, list[WebScripted]] = field(default_factory=dict)
    everyone: list[WebScripted] = field(default_factory=list)


class FakeWebPush(AiohttpServer):
    def __init__(self, *, record: bool = True, host: str = "127.0.0.1", vapid_public_key: str | None = None,
                 decrypt: bool = True) -> None:
        super().__init__()
        self.record, self.host, self.decrypt = record, host, decrypt
        self.expected_vapid_key = vapid_public_key  # when set, other keys get 403
        self.subscriptions: dict[str, Subscription] = {}
        self.received: list[ReceivedWebPush] = []
        self.vapid_jwts: set[str] = set()
        self.requests = 0
        self.hold: asyncio.Event | None = None  # when set, answers wait for it (a slow push service)
        self._verified: dict[tuple[str, str, str], str | None] = {}
        self._state = _State()

    async def start(self) -> FakeWebPush:
        app = web.Application()
        app.router.add_post("/push/{sid}", self._push)
        await self.serve(app)
        return self

    @property
    def origin(self) -> str:
        return f"https://{self.host}:{self.port}"

    def subscribe(self) -> tuple[str, WebKeys]:
        """A new browser subscription: (endpoint, keys) as the browser would report them."""
        sid = secrets.token_urlsafe(12)
        key = ec.generate_private_key(ec.SECP256R1())
        auth = os.urandom(16)
        self.subscriptions[sid] = Subscription(key, auth)
        public = key.public_key().public_bytes(serialization.Encoding.X962,
                                               serialization.PublicFormat.UncompressedPoint)
        return f"{self.origin}/push/{sid}", WebKeys(p256dh=_b64(public), auth=_b64(auth))

    def fail(self, status: int, *, endpoint: str | None = None, retry_after: str | None = None,
             times: int | None = None) -> None:
        scripted = WebScripted(status, retry_after, times)
        if endpoint is None:
            self._state.everyone.append(scripted)
        else:
            self._state.per_subscription.setdefault(endpoint.rsplit("/", 1)[1], []).append(scripted)

    async def _push(self, request: web.Request) -> web.Response:
        if self.hold is not None:
            await self.hold.wait()
        self.requests += 1
        sid = request.match_info["sid"]
        subscription = self.subscriptions.get(sid)
        if subscription is None:
            return web.Response(status=404)
        problem = self._check_headers(request.headers)
        if problem is not None:
            return web.Response(status=problem[0], text=problem[1])
        body = await request.read()
        if len(body) > 4096:
            return web.Response(status=413)
        scripted = self._scripted(sid)
        if scripted is not None:
            headers = {"Retry-After": scripted.retry_after} if scripted.retry_after else None
            return web.Response(status=scripted.status, headers=headers)
        if self.decrypt or self.record:
            try:
                payload = json.loads(http_ece.decrypt(body, private_key=subscription.private_key,
                                                      auth_secret=subscription.auth, version="aes128gcm"))
            except (http_ece.ECEException, ValueError) as exc:
                return web.Response(status=400, text=f"cannot decrypt: {exc}")
            if self.record:
                self.received.append(ReceivedWebPush(sid, dict(request.headers), payload))
        return web.Response(status=201, headers={"Location": f"{self.origin}/message/{secrets.token_hex(6)}"})

    def _check_headers(self, headers: Any) -> tuple[int, str] | None:
        if headers.get("Content-Encoding") != "aes128gcm":
            return 415, "Content-Encoding must be aes128gcm"
        if not headers.get("TTL", "").isdigit():
            return 400, "TTL header required"
        if headers.get("Urgency", "normal") not in ("very-low", "low", "normal", "high"):
            return 400, "bad Urgency"
        if "Topic" in headers and not _TOPIC.match(headers["Topic"]):
            return 400, "bad Topic"
        return self._check_vapid(headers.get("Authorization", ""))

    def _check_vapid(self, authorization: str) -> tuple[int, str] | None:
        match = _VAPID.match(authorization)
        if not match:
            return 401, "VAPID authorization required"
        token, key = match.groups()
        if self.expected_vapid_key and key != self.expected_vapid_key:
            return 403, "subscription belongs to another application server key"
        cache_key = (token, key, self.origin)
        if cache_key not in self._verified:
            self._verified[cache_key] = self._verify(token, key)
            self.vapid_jwts.add(token)
        problem = self._verified[cache_key]
        return (401, problem) if problem else None

    def _verify(self, token: str, key: str) -> str | None:
        try:
            public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), _unb64(key))
            claims = jwt.decode(token, public, algorithms=["ES256"], audience=self.origin,
                                options={"require": ["aud", "exp", "sub"]})
        except (jwt.PyJWTError, ValueError) as exc:
            return f"bad VAPID token: {exc}"
        if claims["exp"] > time.time() + 24 * 3600:
            return "VAPID exp more than 24 h ahead"
        if not str(claims["sub"]).startswith(("mailto:", "https://")):
            return "VAPID sub must be mailto: or https:"
        return None

    def _scripted(self, sid: str) -> WebScripted | None:
        return take_scripted(self._state.per_subscription.get(sid), self._state.everyone)
