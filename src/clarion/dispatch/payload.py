"""A delivery's `Push`: the notification's content, localized and rendered
for one user and device, with the device's token."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from jinja2 import TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from clarion.providers.base import Content, Push, WebKeys

TEXT_FIELDS = ("title", "body")
_env = ImmutableSandboxedEnvironment(autoescape=False)


@dataclass(frozen=True, slots=True)
class Recipient:
    delivery_id: str
    platform: str
    token: str
    web_keys: dict[str, str] | None
    user_id: str | None
    attributes: dict[str, Any]
    locale: str | None  # the device's, else the user's


def build_push(
    request: dict[str, Any],
    notification_type: str,
    category: str | None,
    recipient: Recipient,
    expires: datetime,
    now: datetime,
) -> Push:
    """Raises jinja2 errors when a template cannot be rendered for this user."""
    keys = recipient.web_keys
    return Push(
        delivery_id=recipient.delivery_id,
        token=recipient.token,
        content=render_content(request, recipient),
        notification_type=notification_type,
        category=category,
        priority=request.get("priority") or "high",
        ttl=max(0, int((expires - now).total_seconds())),
        expires_at=int(expires.timestamp()),
        collapse_key=request.get("collapse_key"),
        overrides=dict((request.get("platforms") or {}).get(recipient.platform) or {}),
        web_keys=WebKeys(keys["p256dh"], keys["auth"]) if keys else None,
    )


def localized_text(request: dict[str, Any], locale: str | None) -> dict[str, Any]:
    """`content` with `localized[tag]` laid over it: exact tag, then its language."""
    content = dict(request.get("content") or {})
    table = {tag.lower(): text for tag, text in (request.get("localized") or {}).items()}
    if locale:
        tag = locale.lower()
        chosen = table.get(tag) or table.get(tag.split("-")[0])
        if chosen:
            content.update({k: v for k, v in chosen.items() if v is not None})
    return content


def render_content(request: dict[str, Any], recipient: Recipient) -> Content:
    text = localized_text(request, recipient.locale)
    user = {"user_id": recipient.user_id, "attributes": recipient.attributes}
    for name in TEXT_FIELDS:
        if text.get(name) and "{" in text[name]:
            text[name] = _template(text[name]).render(user=user)
    return _content(text)


def _content(text: dict[str, Any]) -> Content:
    return Content(
        title=text.get("title"),
        body=text.get("body"),
        image_url=text.get("image_url"),
        url=text.get("url"),
        data=dict(text.get("data") or {}),
        actions=list(text.get("actions") or []),
        sound=text.get("sound"),
        badge=text.get("badge"),
    )


@lru_cache(maxsize=256)
def _template(source: str) -> Any:
    return _env.from_string(source)


def variants(request: dict[str, Any]) -> Iterator[tuple[str | None, Content]]:
    """The unrendered content and each localized variant (for size checks)."""
    yield None, _content(localized_text(request, None))
    for tag in request.get("localized") or {}:
        yield tag, _content(localized_text(request, tag))


def template_errors(request: dict[str, Any]) -> list[dict[str, Any]]:
    places = [(["body", "content", name], (request.get("content") or {}).get(name)) for name in TEXT_FIELDS]
    for tag, text in (request.get("localized") or {}).items():
        places += [(["body", "localized", tag, name], (text or {}).get(name)) for name in TEXT_FIELDS]
    errors = []
    for loc, source in places:
        if source and "{" in source:
            try:
                _env.parse(source)
            except TemplateSyntaxError as exc:
                errors.append({"loc": loc, "msg": f"template error: {exc.message}"})
    return errors
