"""What one user sees: the localized variant, personalized, as a `Content`.

Pure functions over plain data. Templates are jinja2 in an immutable sandbox
with `{{ user.… }}` the only variable; a missing attribute renders as empty
text (ChainableUndefined), so `{{ user.attributes.first_name }}` works for
users who have none. `validate_templates` runs at the API, so syntax errors,
unknown variables and unsafe constructs are a 422 there, never a surprise in
a worker.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any

from jinja2 import ChainableUndefined, Template, TemplateError, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from clarion.providers.base import Content

TEMPLATED_FIELDS = ("title", "body", "image_url", "url")
LOCALIZED_FIELDS = ("title", "body")
MAX_TEMPLATE_CHARS = 4096
_MAX_REPEAT = 4096  # `"x" * n` and `a ** n` are capped: templates must stay cheap to render


class TemplateRenderError(ValueError):
    """A template failed for this user (e.g. arithmetic on a text attribute)."""


class _Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int) and abs(right) > 64:
            raise SecurityError("exponent too large")
        if operator == "*" and any(isinstance(v, int) and v > _MAX_REPEAT for v in (left, right)) \
                and any(isinstance(v, (str, list, tuple)) for v in (left, right)):
            raise SecurityError("repetition too large")
        return super().call_binop(context, operator, left, right)


_ENV = _Sandbox(undefined=ChainableUndefined, autoescape=False)


def choose_localized(
    localized: Mapping[str, Mapping[str, Any]] | None, device_locale: str | None, user_locale: str | None,
) -> Mapping[str, Any] | None:
    """The variant for the device's locale (else the user's): the exact tag, then
    its language (`de-AT` → `de`); None means the default content. Tags compare
    case-insensitively, with `_` as `-`."""
    locale = device_locale or user_locale
    if not localized or not locale:
        return None
    variants = {_normal(tag): variant for tag, variant in localized.items()}
    tag = _normal(locale)
    return variants.get(tag) or variants.get(tag.split("-", 1)[0])


def render_content(
    content: Mapping[str, Any], user: Mapping[str, Any], *, localized: Mapping[str, Mapping[str, Any]] | None = None,
    device_locale: str | None = None, user_locale: str | None = None,
) -> Content:
    """The notification's content for one user on one device: localized, then
    rendered with `user` ({user_id, attributes, ...}). Raises TemplateRenderError."""
    merged = dict(content)
    variant = choose_localized(localized, device_locale, user_locale)
    if variant:
        merged.update({key: value for key, value in variant.items() if key in LOCALIZED_FIELDS and value})
    context = {"user": user}
    return Content(
        **{name: _render(merged.get(name), context) for name in TEMPLATED_FIELDS},
        data={key: _render(str(value), context) or "" for key, value in (merged.get("data") or {}).items()},
        actions=[{**action, "title": _render(action.get("title"), context) or ""}
                 for action in merged.get("actions") or []],
        sound=merged.get("sound"),
        badge=merged.get("badge"),
    )


def validate_templates(content: Mapping[str, Any], localized: Mapping[str, Mapping[str, Any]] | None = None) -> None:
    """Raises ValueError naming the field when a template cannot be accepted:
    too long, bad syntax, a variable other than `user`, a private attribute."""
    for where, source in _template_sources(content, localized):
        try:
            _check_template(source)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None


def has_templates(content: Mapping[str, Any], localized: Mapping[str, Mapping[str, Any]] | None = None) -> bool:
    """Whether any text would go through jinja (the same test `_render` makes)."""
    return any("{" in source for _where, source in _template_sources(content, localized))


def _check_template(source: str) -> None:
    if len(source) > MAX_TEMPLATE_CHARS:
        raise ValueError(f"template longer than {MAX_TEMPLATE_CHARS} characters")
    try:
        tree = _ENV.parse(source)
    except TemplateError as exc:
        raise ValueError(f"template syntax error: {exc.message}") from exc
    unknown = meta.find_undeclared_variables(tree) - {"user"}
    if unknown:
        raise ValueError(f"unknown template variable {sorted(unknown)[0]!r}; only user.* is available")
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        name = node.attr if isinstance(node, nodes.Getattr) else getattr(node.arg, "value", "")
        if isinstance(name, str) and name.startswith("_"):
            raise ValueError(f"template may not use the private attribute {name!r}")
    try:  # the sandbox's own checks that only show when rendering
        _compiled(source).render(user={"user_id": "", "attributes": {}})
    except SecurityError as exc:
        raise ValueError(f"template not allowed: {exc}") from exc
    except (TemplateError, ArithmeticError, TypeError, ValueError):
        pass  # depends on the user's data: reported per delivery by render_content


def _template_sources(
    content: Mapping[str, Any], localized: Mapping[str, Mapping[str, Any]] | None,
) -> Iterator[tuple[str, str]]:
    for name in TEMPLATED_FIELDS:
        if isinstance(content.get(name), str):
            yield f"content.{name}", content[name]
    for key, value in (content.get("data") or {}).items():
        yield f"content.data.{key}", str(value)
    for index, action in enumerate(content.get("actions") or []):
        if isinstance(action.get("title"), str):
            yield f"content.actions[{index}].title", action["title"]
    for tag, variant in (localized or {}).items():
        for name in LOCALIZED_FIELDS:
            if isinstance(variant.get(name), str):
                yield f"localized.{tag}.{name}", variant[name]


def _render(source: str | None, context: Mapping[str, Any]) -> str | None:
    if source is None or ("{" not in source):  # most texts have no template: skip jinja
        return source
    try:
        return _compiled(source).render(context)
    except (TemplateError, ArithmeticError, TypeError, ValueError) as exc:
        raise TemplateRenderError(f"template {source[:40]!r} failed: {exc}") from exc


@lru_cache(maxsize=1024)
def _compiled(source: str) -> Template:
    return _ENV.from_string(source)


def _normal(tag: str) -> str:
    return tag.replace("_", "-").lower()
