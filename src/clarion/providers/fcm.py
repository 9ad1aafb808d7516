"""FCM HTTP v1, with an OAuth2 bearer from the app's service account.

The bearer comes from the JWT-bearer grant (RFC 7523) against the service
account's own `token_uri`, posted through our own HTTP/1.1 pool so that it uses
our TLS context (CLARION_CA_FILE) and never blocks the event loop; it is
cached until five minutes before it expires and renewed on a 401.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import SplitResult, urlencode, urlsplit

import jwt

from clarion.providers.base import Failed, Outcome, Platform, Push, Retry, Sent
from clarion.providers.http1 import Http1Pool, resolve
from clarion.providers.outcomes import Verdict, outcome_for, parse_retry_after, status_verdict
from clarion.providers.payloads import dumps, fcm_message

V = Verdict
# FcmError codes (firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode) and
# the google.rpc status that stands in when FCM gives no code.
FCM_ERRORS: dict[str, Verdict] = {
    "UNREGISTERED": V.INVALID_TOKEN,
    "SENDER_ID_MISMATCH": V.INVALID_TOKEN,
    "INVALID_ARGUMENT": V.FAILED,  # unless it is about the token: see _verdict
    "QUOTA_EXCEEDED": V.RETRY,
    "UNAVAILABLE": V.RETRY,
    "INTERNAL": V.RETRY,
    "THIRD_PARTY_AUTH_ERROR": V.CREDENTIALS,
    "PERMISSION_DENIED": V.CREDENTIALS,
    "UNAUTHENTICATED": V.RENEW_AUTH,
}
SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
REFRESH_MARGIN_SECONDS = 300
REQUEST_TIMEOUT_SECONDS = 30.0
_REQUIRED_FIELDS = ("project_id", "client_email", "private_key", "token_uri")
_FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def check_service_account(service_account: Mapping[str, Any]) -> None:
    """Raises ValueError unless the JSON has what the JWT-bearer flow needs."""
    missing = [name for name in _REQUIRED_FIELDS if not service_account.get(name)]
    if missing:
        raise ValueError(f"service_account lacks {', '.join(missing)}")
    try:
        jwt.encode({"probe": 1}, service_account["private_key"], algorithm="RS256")
    except (ValueError, TypeError, jwt.PyJWTError) as exc:
        raise ValueError("service_account.private_key is not an RSA private key (PEM)") from exc


class _AuthFailure(Exception):
    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome)
        self.outcome = outcome


class AccessToken:
    """The OAuth2 bearer, fetched once and shared by concurrent sends."""

    def __init__(self, service_account: Mapping[str, Any], clock: Callable[[], float] = time.time) -> None:
        self._account = service_account
        self._clock = clock
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        self.fetched = 0

    async def get(self, pool: Http1Pool) -> str:
        """The bearer; raises _AuthFailure (Retry or Failed) if none can be had."""
        if self._token is None or self._clock() >= self._expires_at - REFRESH_MARGIN_SECONDS:
            async with self._lock:  # one fetch, however many sends are waiting
                if self._token is None or self._clock() >= self._expires_at - REFRESH_MARGIN_SECONDS:
                    await self._fetch(pool)
        assert self._token is not None
        return self._token

    def invalidate(self, stale: str) -> None:
        if self._token == stale:
            self._token = None

    async def _fetch(self, pool: Http1Pool) -> None:
        form = urlencode({"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                          "assertion": self._assertion()}).encode()
        try:
            response = await pool.post(urlsplit(self._account["token_uri"]), _FORM, form)
        except (OSError, ValueError) as exc:  # TimeoutError is an OSError; ValueError: an unusable token_uri
            raise _AuthFailure(Retry("oauth_unavailable", f"token endpoint: {exc!r}")) from exc
        body, status = response.body, response.status
        if status != 200:
            verdict = V.RETRY if status == 429 or status >= 500 else V.CREDENTIALS
            raise _AuthFailure(outcome_for(verdict, "oauth_rejected", f"token endpoint {status}: {body[:200]!r}"))
        answer = json.loads(body)
        self._token = answer["access_token"]
        self._expires_at = self._clock() + float(answer.get("expires_in", 3600))
        self.fetched += 1

    def _assertion(self) -> str:
        now = int(self._clock())
        claims = {"iss": self._account["client_email"], "scope": SCOPE, "aud": self._account["token_uri"],
                  "iat": now, "exp": now + 3600}
        headers = {"kid": self._account["private_key_id"]} if self._account.get("private_key_id") else None
        return jwt.encode(claims, self._account["private_key"], algorithm="RS256", headers=headers)


class FCMClient:
    """The Provider for one app's FCM service account."""

    platform: Platform = "android"

    def __init__(
        self, *, service_account: Mapping[str, Any], base_url: str, ssl_context: ssl.SSLContext,
        max_connections: int = 100, clock: Callable[[], float] = time.time,
    ) -> None:
        check_service_account(service_account)
        self._url = urlsplit(f"{base_url.rstrip('/')}/v1/projects/{service_account['project_id']}/messages:send")
        self._token = AccessToken(service_account, clock)
        # FCM's host and token_uri are the operator's, not the users': the system resolver, no address checks.
        self._pool = Http1Pool(ssl_context=ssl_context, resolve=resolve, max_per_origin=max_connections,
                               timeout=REQUEST_TIMEOUT_SECONDS)

    @property
    def tokens_fetched(self) -> int:
        return self._token.fetched

    async def send(self, pushes: Sequence[Push]) -> list[Outcome]:
        return list(await asyncio.gather(*(self._send_one(push) for push in pushes)))

    async def aclose(self) -> None:
        await self._pool.aclose()

    async def _send_one(self, push: Push) -> Outcome:
        ttl = max(0, push.expires_at - int(time.time())) if push.expires_at is not None else push.ttl
        body = dumps(fcm_message(push, ttl))
        for attempt in range(2):  # a second go after renewing a rejected bearer
            try:
                bearer = await self._token.get(self._pool)
            except _AuthFailure as exc:
                return exc.outcome
            verdict, outcome = await self._post(self._url, body, bearer)
            if verdict is not V.RENEW_AUTH or attempt == 1:
                return outcome
            self._token.invalidate(bearer)
        raise AssertionError("unreachable")

    async def _post(self, url: SplitResult, body: bytes, bearer: str) -> tuple[Verdict | None, Outcome]:
        headers = {"Authorization": f"Bearer {bearer}", "Content-Type": "application/json"}
        try:
            response = await self._pool.post(url, headers, body)
        except OSError as exc:  # connection, TLS, DNS, timeout (TimeoutError is an OSError)
            return V.RETRY, Retry("connection_error", repr(exc))
        answer, status, retry_after = response.body, response.status, response.headers.get("retry-after")
        if status == 200:
            return None, Sent()
        reason, message, verdict = _verdict(status, answer)
        if verdict is V.RENEW_AUTH:  # twice in a row: the account itself is refused
            return verdict, Failed(reason, message, credentials_invalid=True)
        return verdict, outcome_for(verdict, reason, message, parse_retry_after(retry_after))


def _verdict(status: int, body: bytes) -> tuple[str, str, Verdict]:
    """(reason, message, verdict) from FCM's error body."""
    try:
        error = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        error = {}
    codes = [d.get("errorCode") for d in error.get("details", []) if isinstance(d, dict) and d.get("errorCode")]
    reason = codes[0] if codes else error.get("status") or ("UNAUTHENTICATED" if status == 401 else str(status))
    message = f"{status} {error.get('message', '')}".strip()
    verdict = FCM_ERRORS.get(reason) or status_verdict(status)
    if reason == "INVALID_ARGUMENT" and _about_token(error):
        verdict = V.INVALID_TOKEN
    return reason, message, verdict


def _about_token(error: Mapping[str, Any]) -> bool:
    # FCM says which field it rejects in a google.rpc.BadRequest detail; older
    # answers only say so in the message.
    for detail in error.get("details", []):
        for violation in detail.get("fieldViolations", []) if isinstance(detail, dict) else []:
            if violation.get("field") == "message.token":
                return True
    return "registration token" in str(error.get("message", "")).lower()
