"""Localization, personalization and template validation (pure functions)."""

from __future__ import annotations

import re

import pytest

from clarion.domain.content import TemplateRenderError, choose_localized, render_content, validate_templates
from clarion.providers.base import Content, Push
from clarion.providers.payloads import MAX_PAYLOAD_BYTES, encoded_size

LOCALIZED = {"de": {"title": "Hallo"}, "de-AT": {"title": "Servus"}, "fr": {"title": "Salut", "body": "Ça va"}}
USER = {"user_id": "u1", "attributes": {"first_name": "Ann", "points": 7}}


@pytest.mark.parametrize(("device", "user", "expected"), [
    ("de-AT", None, "Servus"),  # exact tag
    ("de_at", None, "Servus"),  # case and underscore are not differences
    ("de-CH", None, "Hallo"),  # language
    (None, "fr-CA", "Salut"),  # the user's locale when the device has none
    ("fr", "de", "Salut"),  # the device wins over the user
    ("ja", "de", None),  # no variant: default content
    (None, None, None),
])
def test_choose_localized(device: str | None, user: str | None, expected: str | None) -> None:
    """Exact tag, then language, then the default; the device's locale before the user's."""
    variant = choose_localized(LOCALIZED, device, user)
    assert (variant or {}).get("title") == expected


def test_render_localized_and_personalized() -> None:
    """The variant replaces title/body; placeholders render per user, in data and actions too."""
    content = {"title": "Hi", "body": "You have {{ user.attributes.points }} points",
               "data": {"uid": "{{ user.user_id }}"},
               "actions": [{"id": "a", "title": "Go {{ user.attributes.first_name }}"}],
               "badge": 2}
    rendered = render_content(content, USER, localized={"fr": {"body": "{{ user.attributes.first_name }}, ça va"}},
                              device_locale="fr-FR")
    assert rendered == Content(title="Hi", body="Ann, ça va", data={"uid": "u1"},
                               actions=[{"id": "a", "title": "Go Ann"}], badge=2)


def test_missing_attribute_renders_empty() -> None:
    """A user without the attribute gets empty text, not an error."""
    rendered = render_content({"title": "Hi {{ user.attributes.first_name }}!"}, {"user_id": "u2", "attributes": {}})
    assert rendered.title == "Hi !"


def test_render_error_is_reported() -> None:
    """A template that fails on this user's data raises TemplateRenderError."""
    with pytest.raises(TemplateRenderError):
        render_content({"title": "{{ user.attributes.first_name + 1 }}"}, USER)


@pytest.mark.parametrize(("content", "localized", "message"), [
    ({"title": "{{ user.attributes.x "}, None, "content.title: template syntax error"),
    ({"body": "{{ secret }}"}, None, "unknown template variable 'secret'"),
    ({"body": "{{ user.__class__.__mro__ }}"}, None, "private attribute '__"),
    ({"body": "{{ user['_private'] }}"}, None, "private attribute '_private'"),
    ({"body": "{{ user.attributes.clear() }}"}, None, "not allowed"),
    ({"body": "{{ 'x' * 100000000 }}"}, None, "not allowed"),
    ({"data": {"k": "{% for %}"}}, None, "content.data.k"),
    ({"title": "ok"}, {"de": {"title": "{{ user. }}"}}, "localized.de.title"),
    ({"title": "x" * 5000}, None, "longer than"),
])
def test_bad_templates_are_rejected(content: dict, localized: dict | None, message: str) -> None:
    """Syntax errors, other variables, private attributes and unsafe calls are a ValueError naming the field."""
    with pytest.raises(ValueError, match=re.escape(message)):
        validate_templates(content, localized)


def test_good_templates_pass() -> None:
    """Ordinary placeholders, filters and conditions are accepted."""
    validate_templates({"title": "Hi {{ user.attributes.first_name | default('there') }}",
                        "body": "{% if user.attributes.vip %}VIP{% endif %} {{ user.attributes.points + 1 }}"},
                       {"de": {"title": "Hallo {{ user.user_id }}"}})


@pytest.mark.parametrize("platform", ["ios", "android", "web"])
def test_encoded_size_grows_with_content_and_catches_oversize(platform: str) -> None:
    """encoded_size is the provider's count; a 5,000-character body is over the limit everywhere."""
    small = Push("00000000-0000-0000-0000-000000000000", "t", Content(title="a", body="b"))
    large = Push("00000000-0000-0000-0000-000000000000", "t", Content(title="a", body="é" * 2500))
    assert 40 < encoded_size(platform, small) < 400  # type: ignore[arg-type]
    assert encoded_size(platform, large) > MAX_PAYLOAD_BYTES  # type: ignore[arg-type]
