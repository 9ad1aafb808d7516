"""A delivery's `Push`: the notification's content, localized and rendered
for one user and device, with the device's token."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from clarion.domain import content
from clarion.providers.base import Content, Push, WebKeys


@dataclass(frozen=True, slots=True)
class Recipient:
    delivery_id: str
    platform: str
    token: str
    web_keys: dict[str, str] | None
    user_id: str | None
    attributes: dict[str, Any]
    locale: str | None  # the device's, else the user's


class ContentFor:
    """A notification's content per recipient. Without templates it depends only
    on the locale, so it is rendered once per locale and shared (Content is
    never changed after it is made)."""

    def __init__(self, request: dict[str, Any]) -> None:
        self._request = request
        self._by_locale: dict[str | None, Content] | None = (
            None if content.has_templates(request.get("content") or {}, request.get("localized")) else {})

    def __call__(self, recipient: Recipient) -> Content:
        """Raises content.TemplateRenderError when a template fails for this user."""
        if self._by_locale is None:
            return render_content(self._request, recipient)
        rendered = self._by_locale.get(recipient.locale)
        if rendered is None:
            rendered = self._by_locale[recipient.locale] = render_content(self._request, recipient)
        return rendered


def build_push(
    request: dict[str, Any],
    notification_type: str,
    category: str | None,
    recipient: Recipient,
    rendered: Content,
    expires: datetime,
    now: datetime,
) -> Push:
    """The Push for one recipient, with its content already rendered (`ContentFor`)."""
    keys = recipient.web_keys
    return Push(
        delivery_id=recipient.delivery_id,
        token=recipient.token,
        content=rendered,
        notification_type=notification_type,
        category=category,
        priority=request.get("priority") or "high",
        ttl=max(0, int((expires - now).total_seconds())),
        expires_at=int(expires.timestamp()),
        collapse_key=request.get("collapse_key"),
        overrides=dict((request.get("platforms") or {}).get(recipient.platform) or {}),
        web_keys=WebKeys(keys["p256dh"], keys["auth"]) if keys else None,
    )


def render_content(request: dict[str, Any], recipient: Recipient) -> Content:
    """Localized for the recipient's locale and rendered for the user
    (raises content.TemplateRenderError)."""
    user = {"user_id": recipient.user_id, "attributes": recipient.attributes}
    return content.render_content(
        request.get("content") or {}, user, localized=request.get("localized"), device_locale=recipient.locale
    )


def variants(request: dict[str, Any]) -> Iterator[tuple[str | None, Content]]:
    """The unrendered content and each localized variant (for size checks)."""
    base = dict(request.get("content") or {})
    yield None, _raw_content(base)
    for tag, variant in (request.get("localized") or {}).items():
        texts = {k: v for k, v in (variant or {}).items() if k in content.LOCALIZED_FIELDS and v}
        yield tag, _raw_content({**base, **texts})


def _raw_content(text: dict[str, Any]) -> Content:
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


def template_errors(request: dict[str, Any]) -> list[dict[str, Any]]:
    """[{loc, msg}] for a template the API must refuse (none when all are fine)."""
    try:
        content.validate_templates(request.get("content") or {}, request.get("localized"))
    except ValueError as exc:
        where, _, message = str(exc).partition(": ")
        path = where.replace("[", ".").replace("]", "").split(".")
        loc: list[str | int] = ["body", *(int(p) if p.isdigit() else p for p in path)]
        return [{"loc": loc, "msg": f"template error: {message}"}]
    return []
