"""A fake FCM: the OAuth2 token endpoint and HTTP v1 `messages:send` on 127.0.0.1.

    async with FakeFCM() as fcm:
        client = FCMClient(service_account=fcm.service_account(), base_url=fcm.url, ...)
        fcm.fail(404, "UNREGISTERED", token="t1")

The token endpoint verifies the RS256 assertion (signature with the service
account's public key, iss, aud = token_uri, scope, lifetime) and issues opaque
bearers; `messages:send` accepts only live bearers and checks the message.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes.scripting import take_scripted
from tests.fakes.tls import AiohttpServer

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
_TTL = re.compile(r"^\d+(\.\d{1,9})?s$")
_STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}


@dataclass
class FcmScripted:
    status: int
    error_code: str | None  # the FcmError errorCode, or None for a bare google.rpc status
    retry_after: str | None = None
    field_violation: str | None = None  # e.g. "message.token"
    times: int | None = None


@dataclass
class FcmState:
    per_token: dict[str, list[FcmScripted]] = field(default_factory=dict)
    everyone: list[FcmScripted] = field(default_factory=list)
    oauth_status: int = 200


class FakeFCM(AiohttpServer):
    def __init__(self, *, project_id: str = "clarion-test", record: bool = True, tls: bool = False,
                 token_lifetime: int = 3600) -> None:
        super().__init__()
        self.project_id = project_id
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.record, self.tls, self.token_lifetime = record, tls, token_lifetime
        self.received: list[dict[str, Any]] = []
        self.bearers: dict[str, float] = {}  # issued bearer -> expiry
        self.assertions = 0
        self.requests = 0
        self._state = FcmState()

    async def start(self) -> FakeFCM:
        app = web.Application()
        app.router.add_post("/token", self._token)
        app.router.add_post("/v1/projects/{project}/messages:send", self._send)
        await self.serve(app, tls=self.tls)
        return self

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def service_account(self) -> dict[str, str]:
        """A service-account JSON whose token_uri is this fake."""
        pem = self._key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()).decode()
        return {"type": "service_account", "project_id": self.project_id, "private_key_id": "fake-key-1",
                "private_key": pem, "client_email": f"clarion@{self.project_id}.iam.gserviceaccount.com",
                "client_id": "1", "token_uri": f"{self.url}/token"}

    # -- scripting -------------------------------------------------------------
    def fail(self, status: int, error_code: str | None, *, token: str | None = None,
             retry_after: str | None = None, field_violation: str | None = None, times: int | None = None) -> None:
        scripted = FcmScripted(status, error_code, retry_after, field_violation, times)
        if token is None:
            self._state.everyone.append(scripted)
        else:
            self._state.per_token.setdefault(token, []).append(scripted)

    def revoke_bearers(self) -> None:
        """Every bearer issued so far is answered 401 from now on."""
        self.bearers.clear()

    def refuse_assertions(self, status: int = 400) -> None:
        self._state.oauth_status = status

    # -- handlers ------------------------------------------------------------------
    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.assertions += 1
        if self._state.oauth_status != 200:
            return web.json_response({"error": "invalid_grant"}, status=self._state.oauth_status)
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        problem = self._check_assertion(str(form.get("assertion", "")))
        if problem:
            return web.json_response({"error": "invalid_grant", "error_description": problem}, status=400)
        bearer = "ya29." + secrets.token_urlsafe(24)
        self.bearers[bearer] = time.time() + self.token_lifetime
        return web.json_response({"access_token": bearer, "expires_in": self.token_lifetime,
                                  "token_type": "Bearer"})

    def _check_assertion(self, assertion: str) -> str | None:
        account = self.service_account()
        try:
            claims = jwt.decode(assertion, self._key.public_key(), algorithms=["RS256"],
                                audience=account["token_uri"], options={"require": ["iss", "aud", "iat", "exp"]})
        except jwt.PyJWTError as exc:
            return f"bad assertion: {exc}"
        if claims["iss"] != account["client_email"] or SCOPE not in str(claims.get("scope", "")).split():
            return "wrong issuer or scope"
        if claims["exp"] - claims["iat"] > 3600:
            return "assertion lifetime over an hour"
        return None

    async def _send(self, request: web.Request) -> web.Response:
        self.requests += 1
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if self.bearers.get(bearer, 0) < time.time():
            return _error(401, None, "Request had invalid authentication credentials.")
        if request.match_info["project"] != self.project_id:
            return _error(404, None, "Requested entity was not found.")
        body = await request.json()
        message = body.get("message") if isinstance(body, dict) else None
        problem = _check_message(message)
        if problem:
            return _error(400, None, problem)
        scripted = self._scripted(message["token"])
        if scripted is not None:
            return _error(scripted.status, scripted.error_code, "scripted failure",
                          scripted.retry_after, scripted.field_violation)
        if self.record:
            self.received.append(message)
        return web.json_response({"name": f"projects/{self.project_id}/messages/{secrets.token_hex(8)}"})

    def _scripted(self, token: str) -> FcmScripted | None:
        return take_scripted(self._state.per_token.get(token), self._state.everyone)


def _check_message(message: Any) -> str | None:
    if not isinstance(message, dict) or not message.get("token"):
        return "message.token is required"
    data = message.get("data", {})
    if not all(isinstance(v, str) for v in data.values()):
        return "message.data values must be strings"
    android = message.get("android", {})
    if android.get("priority", "NORMAL") not in ("HIGH", "NORMAL"):
        return "android.priority must be HIGH or NORMAL"
    if "ttl" in android and not _TTL.match(android["ttl"]):
        return "android.ttl must be a duration like '3600s'"
    return None


def _error(status: int, error_code: str | None, message: str, retry_after: str | None = None,
           field_violation: str | None = None) -> web.Response:
    details: list[dict[str, Any]] = []
    if error_code:
        details.append({"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": error_code})
    if field_violation:
        details.append({"@type": "type.googleapis.com/google.rpc.BadRequest",
                        "fieldViolations": [{"field": field_violation, "description": message}]})
    error: dict[str, Any] = {"code": status, "message": message, "details": details}
    if status in _STATUS_NAMES:
        error["status"] = _STATUS_NAMES[status]
    body = {"error": error}
    headers = {"Retry-After": retry_after} if retry_after else None
    return web.json_response(body, status=status, headers=headers)
