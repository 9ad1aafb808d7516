"""Checks the API runs before accepting a notification: templates that
parse, and a payload every platform accepts (4096 bytes after encoding)."""

from __future__ import annotations

from typing import Any

from clarion.dispatch.payload import template_errors, variants
from clarion.providers.base import Push
from clarion.providers.payloads import MAX_PAYLOAD_BYTES, encoded_size

PLATFORMS = ("ios", "android", "web")


def template_problems(request: dict[str, Any]) -> list[dict[str, Any]]:
    """One {loc, msg} per text field whose template does not parse."""
    return template_errors(request)


def payload_problem(request: dict[str, Any], delivery_id: str) -> str | None:
    """Why the push is too large for a platform, or None. Templates count as written."""
    overrides = request.get("platforms") or {}
    for locale, content in variants(request):
        for platform in PLATFORMS:
            push = Push(
                delivery_id,
                "x" * 64,
                content,
                request.get("type", "alert"),
                request.get("category"),
                collapse_key=request.get("collapse_key"),
                overrides=dict(overrides.get(platform) or {}),
            )
            size = encoded_size(platform, push)  # type: ignore[arg-type]
            if size > MAX_PAYLOAD_BYTES:
                where = f" (localized {locale})" if locale else ""
                return f"the {platform} payload{where} is {size} bytes; the limit is {MAX_PAYLOAD_BYTES}"
    return None
