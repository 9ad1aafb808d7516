"""The preference rule (API.md, Preferences): a notification reaches a user
only if `opt_out_all` is false, its type is not set false and its category
(if any) is not set false; unset means opted in. Quiet hours hold only
`promotional`. Frequency caps apply only to what they name. And what that
makes of one user in an audience (domain/targeting.py), and the counts."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from clarion.domain.counts import counts_from_groups
from clarion.domain.preferences import Cap, Preferences, applicable_caps, held_by_quiet_hours, opt_out_reason
from clarion.domain.targeting import Device, Spec, User, plan_user

TYPES = ("alert", "promotional", "transactional")
SETTING = (None, True, False)  # unset, opted in, opted out


def _prefs(opt_out_all: bool, type_setting: bool | None, category_setting: bool | None, kind: str) -> Preferences:
    types = {} if type_setting is None else {kind: type_setting}
    categories = {} if category_setting is None else {"sale": category_setting}
    return Preferences(opt_out_all=opt_out_all, types=types, categories=categories)


@pytest.mark.parametrize(
    ("opt_out_all", "type_setting", "category_setting", "category", "kind"),
    list(itertools.product((False, True), SETTING, SETTING, (None, "sale"), TYPES)),
)
def test_rule_table(
    opt_out_all: bool, type_setting: bool | None, category_setting: bool | None, category: str | None, kind: str
) -> None:
    """Every combination: reached exactly when nothing that applies says no."""
    prefs = _prefs(opt_out_all, type_setting, category_setting, kind)
    blocked = opt_out_all or type_setting is False or (category is not None and category_setting is False)
    assert opt_out_reason(prefs, kind, category) == ("opted_out" if blocked else None)


def test_other_types_and_categories_do_not_matter() -> None:
    prefs = Preferences(types={"promotional": False}, categories={"news": False})
    assert opt_out_reason(prefs, "alert", "sale") is None
    assert opt_out_reason(prefs, "promotional", "sale") == "opted_out"
    assert opt_out_reason(prefs, "alert", "news") == "opted_out"


def test_opting_in_explicitly_does_not_override_opt_out_all() -> None:
    prefs = Preferences(opt_out_all=True, types={"alert": True}, categories={"sale": True})
    assert opt_out_reason(prefs, "alert", "sale") == "opted_out"


@pytest.mark.parametrize(("kind", "held"), [("promotional", True), ("alert", False), ("transactional", False)])
def test_quiet_hours_hold_only_promotional(kind: str, held: bool) -> None:
    assert held_by_quiet_hours(Preferences(quiet_start="22:00", quiet_end="07:00"), kind) is held
    assert held_by_quiet_hours(Preferences(), kind) is False  # no window set


def test_caps_apply_only_to_what_they_name() -> None:
    caps = {"promotional": {"max": 2, "per_seconds": 3600}, "sale": {"max": 1, "per_seconds": 60}}
    assert applicable_caps(caps, "promotional", "sale") == [
        Cap("type", "promotional", 2, 3600),
        Cap("category", "sale", 1, 60),
    ]
    assert applicable_caps(caps, "alert", "sale") == [Cap("category", "sale", 1, 60)]
    assert applicable_caps(caps, "promotional", None) == [Cap("type", "promotional", 2, 3600)]
    assert applicable_caps(caps, "alert", "news") == []
    assert applicable_caps({}, "alert", None) == []


# -- one user in an audience ---------------------------------------------------------------

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)  # 21:00 in Tokyo
PHONE = Device(1, "dev_1", "ios")
TABLET = Device(2, "dev_2", "android")
USER = User(7, "u7", "Asia/Tokyo")
QUIET = Preferences(quiet_start="20:00", quiet_end="08:00")  # Tokyo: until 23:00 UTC


def spec(kind: str = "alert", ttl: int = 86400, base: datetime = NOW, local_time: str | None = None) -> Spec:
    return Spec(kind, None, base, ttl, local_time)


def test_no_device_is_one_skip() -> None:
    [planned] = plan_user(spec(), USER, [], Preferences(), False, NOW)
    assert (planned.device, planned.status, planned.reason) == (None, "skipped", "no_active_device")


def test_each_device_queued_now() -> None:
    planned = plan_user(spec(), USER, [PHONE, TABLET], Preferences(), False, NOW)
    assert [(p.device, p.status, p.not_before) for p in planned] == [(PHONE, "queued", None), (TABLET, "queued", None)]


def test_opted_out_skips_every_device() -> None:
    planned = plan_user(spec(), USER, [PHONE, TABLET], Preferences(opt_out_all=True), True, NOW)
    assert {(p.status, p.reason) for p in planned} == {("skipped", "opted_out")} and len(planned) == 2


def test_capped_skips_every_device() -> None:
    planned = plan_user(spec(), USER, [PHONE, TABLET], Preferences(), True, NOW)
    assert [(p.status, p.reason) for p in planned] == [("skipped", "frequency_capped")] * 2


def test_promotional_held_until_quiet_hours_end() -> None:
    [planned] = plan_user(spec("promotional"), USER, [PHONE], QUIET, False, NOW)
    assert (planned.status, planned.not_before) == ("queued", datetime(2026, 5, 1, 23, 0, tzinfo=UTC))


@pytest.mark.parametrize("kind", ["alert", "transactional"])
def test_alerts_and_transactional_ignore_quiet_hours(kind: str) -> None:
    [planned] = plan_user(spec(kind), USER, [PHONE], QUIET, False, NOW)
    assert (planned.status, planned.not_before) == ("queued", None)


def test_quiet_hours_outlasting_the_ttl_skip() -> None:
    [planned] = plan_user(spec("promotional", ttl=3600), USER, [PHONE], QUIET, False, NOW)
    assert (planned.status, planned.reason) == ("skipped", "quiet_hours_expired")


def test_quiet_hours_use_the_devices_zone_when_the_user_has_none() -> None:
    berlin_phone = Device(3, "dev_3", "ios", "Europe/Berlin")  # 14:00 there: not quiet
    [planned] = plan_user(spec("promotional"), User(8, "u8"), [berlin_phone], QUIET, False, NOW)
    assert (planned.status, planned.not_before) == ("queued", None)


def test_expired_before_fan_out_is_skipped() -> None:
    [planned] = plan_user(spec(ttl=60, base=NOW - timedelta(minutes=5)), USER, [PHONE], Preferences(), False, NOW)
    assert (planned.status, planned.reason) == ("skipped", "expired")


def test_send_at_in_the_future_is_due_then() -> None:
    later = NOW + timedelta(hours=2)
    [planned] = plan_user(spec(base=later), USER, [PHONE], Preferences(), False, NOW)
    assert planned.not_before == later


def test_local_time_is_due_at_that_wall_clock_in_the_users_zone() -> None:
    [planned] = plan_user(spec(local_time="09:00"), USER, [PHONE], Preferences(), False, NOW)
    assert planned.not_before == datetime(2026, 5, 2, 0, 0, tzinfo=UTC)  # 09:00 in Tokyo


def test_local_time_inside_quiet_hours_waits_for_their_end() -> None:
    [planned] = plan_user(spec("promotional", local_time="06:00"), USER, [PHONE], QUIET, False, NOW)
    assert planned.not_before == datetime(2026, 5, 1, 23, 0, tzinfo=UTC)  # 08:00 Tokyo, not 06:00


# -- counts ----------------------------------------------------------------------------------


def test_counts_sum_to_targeted_with_every_status_present() -> None:
    counts = counts_from_groups([("sent", 5), ("failed", 2), ("skipped", 1)])
    assert counts["targeted"] == 8 and counts["sent"] == 5 and counts["dead"] == 0
    assert set(counts) == {"targeted", "queued", "sent", "delivered", "opened", "failed", "dead", "skipped", "canceled"}
    assert counts_from_groups([])["targeted"] == 0
