"""build_provider wires credentials and settings (URLs, CA file) into working clients."""

from __future__ import annotations

import pytest

from clarion.config import Settings
from clarion.providers.base import Retry, Sent
from clarion.providers.factory import build_provider, check_credentials
from tests.fakes import FakeAPNs, FakeFCM
from tests.providers.conftest import push


async def test_built_clients_reach_their_fakes(apns: FakeAPNs, fcm: FakeFCM) -> None:
    """CLARION_APNS_URL / CLARION_FCM_URL / CLARION_CA_FILE are what the built clients use."""
    settings = Settings(apns_url=apns.url, fcm_url=fcm.url, ca_file=apns.ca_pem_path)
    for platform, credentials, token in (("ios", apns.credentials(), "ab" * 32),
                                         ("android", {"service_account": fcm.service_account()}, "t1")):
        client = build_provider(platform, credentials, settings)  # type: ignore[arg-type]
        try:
            assert await client.send([push(token=token)]) == [Sent()]
        finally:
            await client.aclose()


async def test_without_ca_file_the_fake_is_not_trusted(apns: FakeAPNs) -> None:
    """The system CAs alone do not trust the throwaway CA: TLS is really verified."""
    client = build_provider("ios", apns.credentials(), Settings(apns_url=apns.url))
    try:
        [outcome] = await client.send([push()])
    finally:
        await client.aclose()
    assert isinstance(outcome, Retry) and "CERTIFICATE_VERIFY_FAILED" in outcome.error
    assert apns.requests == 0


@pytest.mark.parametrize(("platform", "credentials", "message"), [
    ("ios", {"team_id": "T", "key_id": "K", "topic": "x"}, "missing private_key"),
    ("ios", {"team_id": "T", "key_id": "K", "topic": "x", "private_key": "nope"}, "not a PEM private key"),
    ("android", {"service_account": {"project_id": "p"}}, "service_account lacks"),
    ("web", {"subject": "http://x", "vapid_private_key": "AQ" + "A" * 41}, "subject must be"),
    ("web", {"subject": "mailto:a@b", "vapid_private_key": "%%%"}, "vapid_private_key"),
])
def test_check_credentials_says_what_is_wrong(platform: str, credentials: dict, message: str) -> None:
    """Unusable credentials are a ValueError with a message, before any network call."""
    with pytest.raises(ValueError, match=message):
        check_credentials(platform, credentials)  # type: ignore[arg-type]
