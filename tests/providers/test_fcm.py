"""The FCM HTTP v1 client against a fake FCM with its OAuth token endpoint."""

from __future__ import annotations

import asyncio

import pytest

from clarion.providers.base import Content, Failed, Retry, Sent
from clarion.providers.fcm import FCMClient
from clarion.providers.tls import client_ssl_context
from tests.fakes import FakeFCM
from tests.providers.conftest import push

# (status, errorCode, field violation) -> the outcome; written out, not derived from FCM_ERRORS.
ERROR_CASES = [
    (404, "UNREGISTERED", None, Failed("UNREGISTERED", "404 scripted failure", invalid_token=True)),
    (403, "SENDER_ID_MISMATCH", None, Failed("SENDER_ID_MISMATCH", "403 scripted failure", invalid_token=True)),
    (400, "INVALID_ARGUMENT", "message.token",
     Failed("INVALID_ARGUMENT", "400 scripted failure", invalid_token=True)),
    (400, "INVALID_ARGUMENT", "message.android.ttl", Failed("INVALID_ARGUMENT", "400 scripted failure")),
    (429, "QUOTA_EXCEEDED", None, Retry("QUOTA_EXCEEDED", "429 scripted failure")),
    (503, "UNAVAILABLE", None, Retry("UNAVAILABLE", "503 scripted failure")),
    (500, "INTERNAL", None, Retry("INTERNAL", "500 scripted failure")),
    (401, "THIRD_PARTY_AUTH_ERROR", None,
     Failed("THIRD_PARTY_AUTH_ERROR", "401 scripted failure", credentials_invalid=True)),
    (502, None, None, Retry("502", "502 scripted failure")),  # no code: the status decides
]


@pytest.mark.parametrize(("status", "code", "field", "expected"), ERROR_CASES,
                         ids=[f"{c[1]}-{c[2]}" for c in ERROR_CASES])
async def test_error_code_maps_to_outcome(fcm: FakeFCM, fcm_client: FCMClient, status: int, code: str | None,
                                          field: str | None, expected: object) -> None:
    """Each FCM error becomes the documented outcome."""
    fcm.fail(status, code, token="t1", field_violation=field)
    assert await fcm_client.send([push(token="t1")]) == [expected]


async def test_retry_after_is_honoured(fcm: FakeFCM, fcm_client: FCMClient) -> None:
    """Retry-After on QUOTA_EXCEEDED becomes Retry.after."""
    fcm.fail(429, "QUOTA_EXCEEDED", retry_after="30")
    [outcome] = await fcm_client.send([push(token="t1")])
    assert isinstance(outcome, Retry) and outcome.after == 30.0


async def test_message_shape(fcm: FakeFCM, fcm_client: FCMClient) -> None:
    """token, notification, string data with clarion_delivery_id, android block; no webpush/apns blocks."""
    content = Content(title="Hi", body="There", image_url="https://img.example/a.png", url="app://orders/1",
                      data={"order": "1"})
    sent = push(token="t1", content=content, priority="normal", ttl=120, collapse_key="orders",
                overrides={"channel_id": "news", "color": "#ff0000"})
    assert await fcm_client.send([sent]) == [Sent()]
    assert fcm.received == [{
        "token": "t1",
        "data": {"order": "1", "url": "app://orders/1", "clarion_delivery_id": sent.delivery_id},
        "notification": {"title": "Hi", "body": "There", "image": "https://img.example/a.png"},
        "android": {"priority": "NORMAL", "ttl": "120s", "collapse_key": "orders",
                    "notification": {"channel_id": "news", "color": "#ff0000", "click_action": "app://orders/1"}},
    }]


async def test_data_only_has_no_notification_block(fcm: FakeFCM, fcm_client: FCMClient) -> None:
    """A push with nothing to show is a data message, high priority kept."""
    assert await fcm_client.send([push(token="t1", content=Content(data={"sync": "1"}))]) == [Sent()]
    message = fcm.received[0]
    assert "notification" not in message and message["android"]["priority"] == "HIGH"


async def test_one_bearer_serves_many_sends(fcm: FakeFCM, fcm_client: FCMClient) -> None:
    """Concurrent sends share one OAuth exchange."""
    outcomes = await asyncio.gather(*(fcm_client.send([push(token=f"t{i}") for i in range(20)]) for _ in range(5)))
    assert all(o == Sent() for batch in outcomes for o in batch)
    assert fcm.assertions == 1 and fcm_client.tokens_fetched == 1


async def test_revoked_bearer_is_refreshed_on_401(fcm: FakeFCM, fcm_client: FCMClient) -> None:
    """A 401 fetches a new bearer and the push goes through."""
    assert await fcm_client.send([push(token="t1")]) == [Sent()]
    fcm.revoke_bearers()
    assert await fcm_client.send([push(token="t1"), push(token="t2")]) == [Sent(), Sent()]
    assert fcm.assertions == 2


async def test_bearer_is_refreshed_near_expiry() -> None:
    """The bearer is reused until five minutes before it expires, then fetched anew."""
    async with FakeFCM(token_lifetime=301) as fcm:  # so "five minutes before" is one second away
        client = FCMClient(service_account=fcm.service_account(), base_url=fcm.url,
                           ssl_context=client_ssl_context(None))
        try:
            await client.send([push(token="t1")])
            await client.send([push(token="t1")])
            assert client.tokens_fetched == 1
            await asyncio.sleep(1.1)
            assert await client.send([push(token="t1")]) == [Sent()]
            assert client.tokens_fetched == 2 and fcm.assertions == 2
        finally:
            await client.aclose()


async def test_refused_assertion_flags_credentials(fcm: FakeFCM, fcm_client: FCMClient) -> None:
    """invalid_grant from the token endpoint fails every push with credentials_invalid."""
    fcm.refuse_assertions(400)
    outcomes = await fcm_client.send([push(token="t1"), push(token="t2")])
    assert all(isinstance(o, Failed) and o.credentials_invalid for o in outcomes)


async def test_assertion_signed_with_another_key_is_refused(fcm: FakeFCM) -> None:
    """The fake checks the RS256 signature: a foreign key gets no bearer."""
    account = {**fcm.service_account(), "private_key": FakeFCM().service_account()["private_key"]}
    client = FCMClient(service_account=account, base_url=fcm.url, ssl_context=client_ssl_context(fcm.ca_pem_path))
    try:
        [outcome] = await client.send([push(token="t1")])
    finally:
        await client.aclose()
    assert isinstance(outcome, Failed) and outcome.credentials_invalid and fcm.requests == 0


async def test_unreachable_fcm_is_retry(fcm: FakeFCM) -> None:
    """Token endpoint down: Retry, not a crash."""
    account = {**fcm.service_account(), "token_uri": "https://127.0.0.1:9/token"}
    client = FCMClient(service_account=account, base_url=fcm.url, ssl_context=client_ssl_context(fcm.ca_pem_path))
    try:
        [outcome] = await client.send([push(token="t1")])
    finally:
        await client.aclose()
    assert isinstance(outcome, Retry) and outcome.reason == "oauth_unavailable"


def test_service_account_without_key_is_refused() -> None:
    """A service account missing fields is a ValueError naming them."""
    with pytest.raises(ValueError, match="private_key"):
        FCMClient(service_account={"project_id": "p", "client_email": "e", "token_uri": "https://x"},
                  base_url="https://fcm", ssl_context=client_ssl_context(None))
