"""The Web Push client against a fake push service that decrypts and checks VAPID."""

from __future__ import annotations

import dataclasses

import pytest

from clarion.providers.base import Content, Failed, Retry, Sent, WebKeys
from clarion.providers.tls import client_ssl_context
from clarion.providers.webpush import WebPushClient, is_refused_address, topic_header
from tests.fakes import FakeWebPush
from tests.providers.conftest import push

ERROR_CASES = [
    (404, Failed("404", "push service answered 404", invalid_token=True)),
    (410, Failed("410", "push service answered 410", invalid_token=True)),
    (413, Failed("413", "push service answered 413")),
    (429, Retry("429", "push service answered 429")),
    (500, Retry("500", "push service answered 500")),
    (503, Retry("503", "push service answered 503")),
    (400, Failed("400", "push service answered 400")),
]


@pytest.mark.parametrize(("status", "expected"), ERROR_CASES, ids=[str(c[0]) for c in ERROR_CASES])
async def test_status_maps_to_outcome(webpush: FakeWebPush, webpush_client: WebPushClient, status: int,
                                      expected: object) -> None:
    """Each push-service status becomes the documented outcome."""
    endpoint, keys = webpush.subscribe()
    webpush.fail(status, endpoint=endpoint)
    assert await webpush_client.send([push(token=endpoint, web_keys=keys)]) == [expected]


async def test_retry_after_is_honoured(webpush: FakeWebPush, webpush_client: WebPushClient) -> None:
    """Retry-After on 429 becomes Retry.after."""
    endpoint, keys = webpush.subscribe()
    webpush.fail(429, retry_after="12")
    [outcome] = await webpush_client.send([push(token=endpoint, web_keys=keys)])
    assert isinstance(outcome, Retry) and outcome.after == 12.0


async def test_payload_decrypts_and_headers_are_right(webpush: FakeWebPush, webpush_client: WebPushClient) -> None:
    """The fake decrypts the aes128gcm body with the subscription's key; TTL, Urgency, Topic are set."""
    endpoint, keys = webpush.subscribe()
    content = Content(title="Hi", body="There", image_url="https://img.example/i.png", url="https://shop.example/",
                      data={"k": "v"}, actions=[{"id": "open", "title": "Open"}])
    sent = push(token=endpoint, web_keys=keys, content=content, priority="normal", ttl=300,
                collapse_key="news of the day, which is long", overrides={"icon": "/icon.png"})
    assert await webpush_client.send([sent]) == [Sent()]
    [received] = webpush.received
    assert received.payload == {
        "title": "Hi", "body": "There", "image": "https://img.example/i.png", "url": "https://shop.example/",
        "actions": [{"action": "open", "title": "Open"}], "data": {"k": "v"}, "icon": "/icon.png",
        "clarion": {"delivery_id": sent.delivery_id},
    }
    assert received.headers["TTL"] == "300" and received.headers["Urgency"] == "normal"
    assert received.headers["Topic"] == topic_header("news of the day, which is long")
    assert len(received.headers["Topic"]) == 32


async def test_vapid_token_is_cached_per_origin(webpush: FakeWebPush, webpush_client: WebPushClient) -> None:
    """Many pushes to one origin carry one VAPID JWT."""
    subscriptions = [webpush.subscribe() for _ in range(20)]
    outcomes = await webpush_client.send([push(token=e, web_keys=k) for e, k in subscriptions])
    assert outcomes == [Sent()] * 20
    assert len(webpush.vapid_jwts) == 1 and webpush_client.vapid_tokens_signed == 1


async def test_vapid_key_mismatch_is_refused(webpush: FakeWebPush, webpush_client: WebPushClient) -> None:
    """A subscription made for another application server key gets 403 → Failed."""
    webpush.expected_vapid_key = "B" + "A" * 86
    endpoint, keys = webpush.subscribe()
    [outcome] = await webpush_client.send([push(token=endpoint, web_keys=keys)])
    assert isinstance(outcome, Failed) and outcome.reason == "403"


async def test_bad_keys_and_missing_keys_are_invalid_tokens(webpush: FakeWebPush,
                                                           webpush_client: WebPushClient) -> None:
    """Keys that are not a P-256 point, or no keys at all, deactivate the device; nothing is sent."""
    endpoint, _ = webpush.subscribe()
    outcomes = await webpush_client.send([push(token=endpoint, web_keys=WebKeys("AAAA", "AAAA")),
                                          push(token=endpoint)])
    assert [o.reason for o in outcomes] == ["bad_keys", "missing_keys"]  # type: ignore[union-attr]
    assert all(isinstance(o, Failed) and o.invalid_token for o in outcomes)
    assert webpush.requests == 0


async def test_payload_grown_past_the_limit_fails_without_deactivating(webpush: FakeWebPush,
                                                                        webpush_client: WebPushClient) -> None:
    """A payload over 4096 bytes once encrypted (a template can grow it after acceptance) fails as too large;
    the device stays active and nothing is sent."""
    endpoint, keys = webpush.subscribe()
    [outcome] = await webpush_client.send([push(token=endpoint, web_keys=keys,
                                                content=Content(title="Hi", body="x" * 4000))])
    assert isinstance(outcome, Failed) and outcome.reason == "payload_too_large" and not outcome.invalid_token
    assert webpush.requests == 0


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "10.0.0.7", "169.254.169.254", "0.0.0.0",
                                  "[::ffff:8.8.8.8]", "192.168.1.1"])
async def test_local_endpoints_are_refused(webpush: FakeWebPush, vapid_key: str, host: str) -> None:
    """Without allow_local_endpoints, loopback/private/link-local/mapped hosts are endpoint_refused."""
    endpoint, keys = webpush.subscribe()
    endpoint = endpoint.replace(f"127.0.0.1:{webpush.port}", f"{host}:{webpush.port}")
    client = WebPushClient(vapid_private_key=vapid_key, subject="mailto:ops@example.com",
                           ssl_context=client_ssl_context(webpush.ca_pem_path))
    try:
        [outcome] = await client.send([push(token=endpoint, web_keys=keys)])
    finally:
        await client.aclose()
    assert isinstance(outcome, Failed) and outcome.reason == "endpoint_refused"
    assert webpush.requests == 0


async def test_plain_http_endpoint_is_refused(webpush_client: WebPushClient) -> None:
    """http:// endpoints are refused even when local endpoints are allowed."""
    [outcome] = await webpush_client.send([push(token="http://127.0.0.1:1/x", web_keys=WebKeys("a", "b"))])
    assert isinstance(outcome, Failed) and outcome.reason == "endpoint_refused"


def test_address_classification() -> None:
    """Global unicast passes; everything local, private or mapped is refused."""
    assert not is_refused_address("93.184.216.34") and not is_refused_address("2606:4700::1111")
    for address in ("127.0.0.1", "::1", "10.1.2.3", "172.16.0.1", "fe80::1", "0.0.0.0", "::", "::ffff:1.2.3.4",
                    "100.64.0.1", "224.0.0.1"):
        assert is_refused_address(address), address


async def test_connection_error_is_retry(webpush: FakeWebPush, webpush_client: WebPushClient) -> None:
    """Nothing listening at the endpoint: Retry."""
    endpoint, keys = webpush.subscribe()
    dead = dataclasses.replace(push(token=endpoint, web_keys=keys), token="https://127.0.0.1:9/push/x")
    [outcome] = await webpush_client.send([dead])
    assert isinstance(outcome, Retry) and outcome.reason == "connection_error"
