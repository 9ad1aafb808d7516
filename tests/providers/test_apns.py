"""The APNs client against a fake APNs that checks what Apple checks."""

from __future__ import annotations

import asyncio
import time

import pytest

from clarion.providers.apns import APNS_REASONS, APNsClient
from clarion.providers.base import Content, Failed, Retry, Sent
from clarion.providers.tls import client_ssl_context
from tests.fakes import FakeAPNs
from tests.providers.conftest import APNS_TOKEN, push

TOKEN_GONE = dict(invalid_token=True)
CREDS = dict(credentials_invalid=True)

# (status, reason) -> the outcome the pipeline must see; written out, not derived from APNS_REASONS.
ERROR_CASES = [
    (400, "BadDeviceToken", Failed("BadDeviceToken", "400 BadDeviceToken", **TOKEN_GONE)),
    (410, "Unregistered", Failed("Unregistered", "410 Unregistered", **TOKEN_GONE)),
    (400, "DeviceTokenNotForTopic", Failed("DeviceTokenNotForTopic", "400 DeviceTokenNotForTopic", **TOKEN_GONE)),
    (410, "ExpiredToken", Failed("ExpiredToken", "410 ExpiredToken", **TOKEN_GONE)),
    (429, "TooManyRequests", Retry("TooManyRequests", "429 TooManyRequests")),
    (500, "InternalServerError", Retry("InternalServerError", "500 InternalServerError")),
    (503, "ServiceUnavailable", Retry("ServiceUnavailable", "503 ServiceUnavailable")),
    (503, "Shutdown", Retry("Shutdown", "503 Shutdown")),
    (429, "TooManyProviderTokenUpdates", Retry("TooManyProviderTokenUpdates", "429 TooManyProviderTokenUpdates")),
    (413, "PayloadTooLarge", Failed("PayloadTooLarge", "413 PayloadTooLarge")),
    (400, "BadCollapseId", Failed("BadCollapseId", "400 BadCollapseId")),
    (400, "BadExpirationDate", Failed("BadExpirationDate", "400 BadExpirationDate")),
    (403, "InvalidProviderToken", Failed("InvalidProviderToken", "403 InvalidProviderToken", **CREDS)),
    (403, "MissingProviderToken", Failed("MissingProviderToken", "403 MissingProviderToken", **CREDS)),
    (403, "BadCertificateEnvironment", Failed("BadCertificateEnvironment", "403 BadCertificateEnvironment", **CREDS)),
    (400, "TopicDisallowed", Failed("TopicDisallowed", "400 TopicDisallowed", **CREDS)),
    (400, "BadTopic", Failed("BadTopic", "400 BadTopic", **CREDS)),
    # Unknown reasons fall back on the status.
    (500, "SomethingNew", Retry("SomethingNew", "500 SomethingNew")),
    (410, "GoneForGood", Failed("GoneForGood", "410 GoneForGood", **TOKEN_GONE)),
    (400, "OddRequest", Failed("OddRequest", "400 OddRequest")),
]


@pytest.mark.parametrize(("status", "reason", "expected"), ERROR_CASES, ids=[c[1] for c in ERROR_CASES])
async def test_error_reason_maps_to_outcome(apns: FakeAPNs, apns_client: APNsClient, status: int, reason: str,
                                            expected: object) -> None:
    """Each APNs answer becomes the documented outcome."""
    apns.fail(status, reason, token=APNS_TOKEN)
    assert await apns_client.send([push()]) == [expected]


def test_every_documented_reason_is_in_the_table() -> None:
    """The table covers every reason the tests name (so none silently falls back)."""
    known = {reason for _, reason, _ in ERROR_CASES} - {"SomethingNew", "GoneForGood", "OddRequest"}
    assert known <= APNS_REASONS.keys()


async def test_retry_after_is_honoured(apns: FakeAPNs, apns_client: APNsClient) -> None:
    """A retry-after header on a 429 becomes Retry.after."""
    apns.fail(429, "TooManyRequests", retry_after="7")
    [outcome] = await apns_client.send([push()])
    assert isinstance(outcome, Retry) and outcome.after == 7.0


async def test_alert_payload_and_headers(apns: FakeAPNs, apns_client: APNsClient) -> None:
    """Title, body, sound, badge, image, actions, thread-id, data and every apns-* header arrive as APNs wants."""
    content = Content(title="Sale", body="50% off", image_url="https://img.example/x.png", sound="ping.caf",
                      badge=3, data={"order": "42"}, actions=[{"id": "buy", "title": "Buy"}])
    sent = push(content=content, category="promo", collapse_key="sale-1", expires_at=2_000_000_000,
                overrides={"thread_id": "sales", "interruption_level": "passive"})
    assert await apns_client.send([sent]) == [Sent()]
    [received] = apns.received
    assert received.payload == {
        "aps": {"alert": {"title": "Sale", "body": "50% off"}, "mutable-content": 1, "category": "promo",
                "sound": "ping.caf", "badge": 3, "thread-id": "sales", "interruption-level": "passive"},
        "clarion": {"delivery_id": sent.delivery_id}, "order": "42", "image_url": "https://img.example/x.png",
    }
    headers = received.headers
    assert headers["apns-topic"] == apns.topic and headers["apns-push-type"] == "alert"
    assert headers["apns-priority"] == "10" and headers["apns-expiration"] == "2000000000"
    assert headers["apns-collapse-id"] == "sale-1" and headers["apns-id"] == sent.delivery_id
    assert headers[":path"] == f"/3/device/{APNS_TOKEN}"


async def test_data_only_is_background_priority_5(apns: FakeAPNs, apns_client: APNsClient) -> None:
    """A push with nothing to show goes as background, priority 5, content-available."""
    sent = push(content=Content(data={"sync": "1"}), priority="high", ttl=60)
    before = int(time.time())
    assert await apns_client.send([sent]) == [Sent()]
    [received] = apns.received
    assert received.headers["apns-push-type"] == "background" and received.headers["apns-priority"] == "5"
    assert received.payload["aps"] == {"content-available": 1} and received.payload["sync"] == "1"
    assert before + 60 <= int(received.headers["apns-expiration"]) <= int(time.time()) + 60


async def test_normal_priority_is_5_and_long_collapse_key_is_cut(apns: FakeAPNs, apns_client: APNsClient) -> None:
    """priority normal → apns-priority 5; a collapse key over 64 bytes is cut to 64."""
    assert await apns_client.send([push(priority="normal", collapse_key="é" * 40)]) == [Sent()]
    headers = apns.received[0].headers
    assert headers["apns-priority"] == "5" and len(headers["apns-collapse-id"].encode()) == 64


async def test_thousand_sends_use_one_provider_token(apns: FakeAPNs, apns_client: APNsClient) -> None:
    """1,000 sends (in concurrent batches) are signed with a single JWT."""
    batches = [[push() for _ in range(250)] for _ in range(4)]
    results = await asyncio.gather(*(apns_client.send(batch) for batch in batches))
    assert all(outcome == Sent() for batch in results for outcome in batch)
    assert apns.requests == 1000 and len(apns.jwts) == 1 and apns_client.tokens_minted == 1


async def test_expired_provider_token_is_renewed_once(apns: FakeAPNs, apns_client: APNsClient) -> None:
    """ExpiredProviderToken on many streams mints one new JWT and the pushes go through."""
    assert await apns_client.send([push()]) == [Sent()]
    apns.expire_provider_tokens()
    outcomes = await apns_client.send([push() for _ in range(50)])
    assert outcomes == [Sent()] * 50
    assert apns_client.tokens_minted == 2 and len(apns.jwts) == 2


async def test_token_is_reminted_after_its_lifetime(apns: FakeAPNs) -> None:
    """After ~50 minutes the client signs a new JWT by itself."""
    now = [time.time()]
    client = APNsClient(**apns.credentials(), base_url=apns.url, clock=lambda: now[0],
                        ssl_context=client_ssl_context(apns.ca_pem_path, alpn=["h2"]))
    try:
        await client.send([push()])
        now[0] += 49 * 60
        await client.send([push()])
        assert client.tokens_minted == 1
        now[0] += 2 * 60
        await client.send([push()])
        assert client.tokens_minted == 2
    finally:
        await client.aclose()


async def test_wrong_key_is_credentials_invalid(apns: FakeAPNs) -> None:
    """A JWT the fake cannot verify with its public key → InvalidProviderToken, credentials flagged."""
    other = FakeAPNs()  # never started: only its key is used
    credentials = {**apns.credentials(), "private_key": other.private_key_pem}
    client = APNsClient(**credentials, base_url=apns.url, ssl_context=client_ssl_context(apns.ca_pem_path, alpn=["h2"]))
    try:
        [outcome] = await client.send([push()])
    finally:
        await client.aclose()
    assert outcome == Failed("InvalidProviderToken", "403 InvalidProviderToken", credentials_invalid=True)


async def test_malformed_token_and_oversized_payload_fail_without_a_request(
        apns: FakeAPNs, apns_client: APNsClient) -> None:
    """A non-hex token is an invalid token; a payload over 4096 bytes is PayloadTooLarge; neither is sent."""
    outcomes = await apns_client.send([push(token="../../etc"), push(content=Content(body="x" * 5000))])
    assert outcomes[0].invalid_token and outcomes[0].reason == "BadDeviceToken"  # type: ignore[union-attr]
    assert isinstance(outcomes[1], Failed) and outcomes[1].reason == "PayloadTooLarge"
    assert apns.requests == 0


async def test_goaway_refused_streams_are_resent_on_a_new_connection(apns: FakeAPNs, apns_client: APNsClient) -> None:
    """After GOAWAY the streams it refused go out again on a fresh connection."""
    apns.goaway_after(5)
    outcomes = await apns_client.send([push() for _ in range(12)])
    assert outcomes == [Sent()] * 12
    assert apns.connections >= 3 and len(apns.received) == 12


async def test_dropped_connection_is_retry_then_reconnects(apns: FakeAPNs, apns_client: APNsClient) -> None:
    """Streams in flight on a cut connection are Retry; the next send reconnects."""
    apns.drop_after(0)
    [outcome] = await apns_client.send([push()])
    assert isinstance(outcome, Retry) and outcome.reason == "connection_error"
    apns.drop_after(None)
    assert await apns_client.send([push()]) == [Sent()]
    assert apns.connections == 2


async def test_unreachable_server_is_retry() -> None:
    """Nothing listening: every push is a Retry, quickly."""
    fake = FakeAPNs()
    client = APNsClient(**fake.credentials(), base_url="https://127.0.0.1:9", ssl_context=client_ssl_context(None))
    try:
        outcomes = await asyncio.wait_for(client.send([push(), push()]), 5)
    finally:
        await client.aclose()
    assert all(isinstance(o, Retry) and o.reason == "connection_error" for o in outcomes)


async def test_saturated_connection_opens_another_up_to_the_cap() -> None:
    """With 10 streams per connection, 100 concurrent pushes use more than one connection, at most 4."""
    async with FakeAPNs(max_concurrent_streams=10) as fake:
        client = APNsClient(**fake.credentials(), base_url=fake.url, max_connections=4,
                            ssl_context=client_ssl_context(fake.ca_pem_path, alpn=["h2"]))
        try:
            outcomes = await asyncio.gather(*(client.send([push() for _ in range(25)]) for _ in range(4)))
        finally:
            await client.aclose()
    assert all(o == Sent() for batch in outcomes for o in batch)
    assert 2 <= fake.connections <= 4


def test_fake_fast_decoder_agrees_with_hpack() -> None:
    """The benchmark fake's HPACK fast path decodes our encoder's blocks exactly as hpack does."""
    from hpack import Decoder

    from clarion.providers.http2 import LiteralEncoder
    from tests.fakes.apns import fast_decode

    encoder, decoder = LiteralEncoder(frozenset({b"authorization"})), Decoder()
    headers = [(b":method", b"POST"), (b":scheme", b"https"), (b":path", b"/3/device/" + b"ab" * 32),
               (b"authorization", b"bearer " + b"x" * 300), (b"apns-id", b"id-1"), (b"x-new", b"")]
    first, second = encoder.encode(headers), encoder.encode(headers)
    assert fast_decode(first) is None  # starts with the table-size update: hpack's job
    assert decoder.decode(first, raw=True) == headers
    assert fast_decode(second) == decoder.decode(second, raw=True) == headers
