"""Pure payload builders, one per platform, and the size check the API runs.

Every payload carries the delivery id (API.md, "Events and receipts"): APNs as
a top-level `clarion` key, FCM as the data key `clarion_delivery_id`, Web Push
as the JSON field `clarion`.
"""

from __future__ import annotations

import json
from typing import Any

from clarion.providers.base import Platform, Push

MAX_PAYLOAD_BYTES = 4096
# aes128gcm adds a header (16 salt + 4 record size + 1 + 65-byte key id),
# a 16-byte tag and one padding delimiter; push services limit the result.
WEBPUSH_OVERHEAD = 86 + 16 + 1

# platforms.ios overrides that belong inside `aps`, by the API's snake_case name.
APS_OVERRIDES = {
    "thread_id": "thread-id",
    "interruption_level": "interruption-level",
    "relevance_score": "relevance-score",
    "target_content_id": "target-content-id",
    "category": "category",
    "sound": "sound",
    "badge": "badge",
}
# platforms.android overrides that belong inside `android.notification`.
ANDROID_NOTIFICATION_OVERRIDES = ("channel_id", "color", "icon", "tag", "sound", "click_action")
WEB_OVERRIDES = ("icon", "badge", "require_interaction", "tag", "silent", "renotify", "lang", "dir")


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON, the form every provider receives."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def is_data_only(push: Push) -> bool:
    """Nothing to show: APNs sends it as `background`, FCM without `notification`."""
    content = push.content
    return not (content.title or content.body or content.image_url)


def apns_payload(push: Push) -> bytes:
    """The APNs JSON body: `aps`, the content's data keys, and `clarion`."""
    body: dict[str, Any] = {key: value for key, value in push.content.data.items()}
    body["aps"] = _aps(push)
    body["clarion"] = {"delivery_id": push.delivery_id}
    if push.content.image_url:
        body["image_url"] = push.content.image_url
    if push.content.url:
        body["url"] = push.content.url
    return dumps(body)


def _aps(push: Push) -> dict[str, Any]:
    content = push.content
    if is_data_only(push):
        aps: dict[str, Any] = {"content-available": 1}
    else:
        alert = {key: value for key, value in (("title", content.title), ("body", content.body)) if value}
        aps = {"alert": alert} if alert else {}
        if content.image_url:
            aps["mutable-content"] = 1  # lets the app's service extension fetch the image
        if content.actions and push.category:
            aps["category"] = push.category
    if content.sound:
        aps["sound"] = content.sound
    if content.badge is not None:
        aps["badge"] = content.badge
    for name, key in APS_OVERRIDES.items():
        if name in push.overrides:
            aps[key] = push.overrides[name]
    return aps


def fcm_message(push: Push, ttl: int) -> dict[str, Any]:
    """The FCM HTTP v1 request body; `ttl` is the seconds the push has left."""
    message: dict[str, Any] = {"token": push.token, "data": _fcm_data(push)}
    content = push.content
    if not is_data_only(push):
        notification = {"title": content.title, "body": content.body, "image": content.image_url}
        message["notification"] = {key: value for key, value in notification.items() if value}
    message["android"] = _android(push, ttl)
    return {"message": message}


def _fcm_data(push: Push) -> dict[str, str]:
    data = {key: str(value) for key, value in push.content.data.items()}
    if push.content.url:
        data.setdefault("url", push.content.url)
    data["clarion_delivery_id"] = push.delivery_id
    return data


def _android(push: Push, ttl: int) -> dict[str, Any]:
    android: dict[str, Any] = {"priority": "HIGH" if push.priority == "high" else "NORMAL", "ttl": f"{ttl}s"}
    if push.collapse_key:
        android["collapse_key"] = push.collapse_key
    notification = {key: push.overrides[key] for key in ANDROID_NOTIFICATION_OVERRIDES if key in push.overrides}
    if push.content.url and not is_data_only(push):
        notification.setdefault("click_action", push.content.url)
    if notification:
        android["notification"] = notification
    return android


def webpush_payload(push: Push) -> bytes:
    """The JSON the service worker receives, before encryption."""
    content = push.content
    body: dict[str, Any] = {
        "title": content.title,
        "body": content.body,
        "image": content.image_url,
        "url": content.url,
        "actions": [{"action": a.get("id"), "title": a.get("title")} for a in content.actions] or None,
        "data": dict(content.data) or None,
    }
    body = {key: value for key, value in body.items() if value is not None}
    body.update({key: push.overrides[key] for key in WEB_OVERRIDES if key in push.overrides})
    body["clarion"] = {"delivery_id": push.delivery_id}
    return dumps(body)


def encoded_size(platform: Platform, push: Push) -> int:
    """Bytes the provider counts against its 4096-byte limit for this push."""
    if platform == "ios":
        return len(apns_payload(push))
    if platform == "android":
        message = fcm_message(push, push.ttl)["message"]
        message.pop("token")  # the limit is on what the device receives
        return len(dumps(message))
    return len(webpush_payload(push)) + WEBPUSH_OVERHEAD
