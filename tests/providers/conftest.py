"""Fakes on loopback and clients pointed at them; each cleans up after itself."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from clarion.providers.apns import APNsClient
from clarion.providers.base import Content, Push
from clarion.providers.fcm import FCMClient
from clarion.providers.tls import client_ssl_context
from clarion.providers.webpush import WebPushClient, b64url
from tests.fakes import FakeAPNs, FakeFCM, FakeWebPush

APNS_TOKEN = "ab" * 32


def push(token: str = APNS_TOKEN, **fields: object) -> Push:
    """A push with a fresh delivery id and a title/body unless given."""
    fields.setdefault("content", Content(title="Hello", body="World"))
    return Push(delivery_id=str(uuid.uuid4()), token=token, **fields)  # type: ignore[arg-type]


@pytest.fixture
async def apns() -> AsyncIterator[FakeAPNs]:
    async with FakeAPNs() as fake:
        yield fake


@pytest.fixture
async def apns_client(apns: FakeAPNs) -> AsyncIterator[APNsClient]:
    client = APNsClient(**apns.credentials(), base_url=apns.url,
                        ssl_context=client_ssl_context(apns.ca_pem_path, alpn=["h2"]))
    yield client
    await client.aclose()


@pytest.fixture
async def fcm() -> AsyncIterator[FakeFCM]:
    async with FakeFCM(tls=True) as fake:
        yield fake


@pytest.fixture
async def fcm_client(fcm: FakeFCM) -> AsyncIterator[FCMClient]:
    client = FCMClient(service_account=fcm.service_account(), base_url=fcm.url,
                       ssl_context=client_ssl_context(fcm.ca_pem_path))
    yield client
    await client.aclose()


@pytest.fixture
async def webpush() -> AsyncIterator[FakeWebPush]:
    async with FakeWebPush() as fake:
        yield fake


@pytest.fixture
def vapid_key() -> str:
    """A VAPID private key as the base64url raw scalar."""
    return b64url(ec.generate_private_key(ec.SECP256R1()).private_numbers().private_value.to_bytes(32, "big"))


@pytest.fixture
async def webpush_client(webpush: FakeWebPush, vapid_key: str) -> AsyncIterator[WebPushClient]:
    client = WebPushClient(vapid_private_key=vapid_key, subject="mailto:ops@example.com",
                           ssl_context=client_ssl_context(webpush.ca_pem_path), allow_local_endpoints=True)
    yield client
    await client.aclose()
