"""Provider clients from an app's stored credentials and the settings."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

from clarion.config import Settings
from clarion.providers.apns import APNsClient, load_apns_key
from clarion.providers.base import Platform, Provider
from clarion.providers.fcm import FCMClient, check_service_account
from clarion.providers.tls import client_ssl_context
from clarion.providers.webpush import WebPushClient, load_vapid_key


def build_provider(
    platform: Platform, credentials: Mapping[str, Any], settings: Settings,
    *, ssl_context: ssl.SSLContext | None = None, **options: Any,
) -> Provider:
    """A client for one app on one platform; each gets its own TLS context (system
    CAs plus CLARION_CA_FILE). `credentials` is what the Apps API stored:
    apns {team_id, key_id, private_key, topic, environment}, fcm {service_account},
    webpush {subject, vapid_private_key}. `options` go to the client (e.g.
    max_connections). Raises ValueError when the credentials are unusable."""
    if platform == "ios":
        return APNsClient(
            team_id=credentials["team_id"], key_id=credentials["key_id"],
            private_key=credentials["private_key"], topic=credentials["topic"],
            environment=credentials.get("environment", "production"),
            base_url=settings.apns_base_url(credentials.get("environment", "production")),
            ssl_context=ssl_context or client_ssl_context(settings.ca_file, alpn=["h2"]), **options,
        )
    if platform == "android":
        return FCMClient(
            service_account=credentials["service_account"], base_url=settings.fcm_url,
            ssl_context=ssl_context or client_ssl_context(settings.ca_file), **options,
        )
    if platform == "web":
        options.setdefault("allow_local_endpoints", settings.allow_local_endpoints)
        return WebPushClient(
            vapid_private_key=credentials["vapid_private_key"], subject=credentials["subject"],
            ssl_context=ssl_context or client_ssl_context(settings.ca_file), **options,
        )
    raise ValueError(f"unknown platform {platform!r}")


def check_credentials(platform: Platform, credentials: Mapping[str, Any]) -> None:
    """For `PUT /v1/apps/{id}/credentials/...`: raises ValueError with a message
    saying what is wrong, without any network call."""
    required = {"ios": ("team_id", "key_id", "private_key", "topic"), "android": ("service_account",),
                "web": ("subject", "vapid_private_key")}[platform]
    missing = [name for name in required if not credentials.get(name)]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    if platform == "ios":
        load_apns_key(credentials["private_key"])
        if credentials.get("environment", "production") not in ("production", "sandbox"):
            raise ValueError("environment must be 'production' or 'sandbox'")
    elif platform == "android":
        check_service_account(credentials["service_account"])
    else:
        load_vapid_key(credentials["vapid_private_key"])
        if not str(credentials["subject"]).startswith(("mailto:", "https://")):
            raise ValueError("subject must be a mailto: or https:// URL")
