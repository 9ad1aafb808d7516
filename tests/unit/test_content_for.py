"""ContentFor: content without templates is rendered once per locale; with templates, per user."""

from __future__ import annotations

from clarion.dispatch.payload import ContentFor, Recipient


def recipient(user_id: str, locale: str | None, name: str = "") -> Recipient:
    return Recipient(f"dlv_{user_id}", "ios", "ab" * 32, None, user_id, {"name": name}, locale)


def test_without_templates_one_content_per_locale_is_shared() -> None:
    content_for = ContentFor({"content": {"title": "Hello", "body": "Plain"},
                              "localized": {"de": {"title": "Hallo"}}})
    first, second = content_for(recipient("a", "en")), content_for(recipient("b", "en"))
    german = content_for(recipient("c", "de"))
    assert first is second and first.title == "Hello"
    assert german.title == "Hallo" and german.body == "Plain"


def test_with_a_template_each_user_gets_their_own() -> None:
    content_for = ContentFor({"content": {"title": "Hi", "data": {"who": "{{ user.attributes.name }}"}}})
    ann, bob = content_for(recipient("a", None, "Ann")), content_for(recipient("b", None, "Bob"))
    assert (ann.data["who"], bob.data["who"]) == ("Ann", "Bob")


def test_a_template_only_in_a_variant_still_renders_per_user() -> None:
    content_for = ContentFor({"content": {"title": "Hi"}, "localized": {"fr": {"title": "Salut {{ user.user_id }}"}}})
    assert content_for(recipient("a", "fr")).title == "Salut a"
    assert content_for(recipient("b", "fr")).title == "Salut b"
