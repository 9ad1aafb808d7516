"""The pipeline end to end with a scripted provider."""

from __future__ import annotations

import pytest

from tests.pipeline.conftest import add_device, deliveries, wait_done
from tests.pipeline.scripted import ScriptedFactory


@pytest.fixture
def factory() -> ScriptedFactory:
    return ScriptedFactory()


async def test_user_ids_reach_every_device(api, keys, factory) -> None:
    """Each active device of each listed user gets one sent delivery; a user without one gets a skip."""
    auth = await keys()
    await add_device(api, auth, "alice", "android")
    await add_device(api, auth, "alice", "ios")
    await add_device(api, auth, "bob", "android")
    body = {"type": "alert", "audience": {"user_ids": ["alice", "bob", "carol"]}, "content": {"title": "hi"}}
    response = await api.post("/v1/notifications", json=body, headers=auth)
    assert response.status_code == 202, response.text
    view = await wait_done(api, auth, response.json()["id"])
    assert view["status"] == "completed"
    assert view["counts"]["targeted"] == 4
    assert view["counts"]["sent"] == 3
    assert view["counts"]["skipped"] == 1
    skipped = await deliveries(api, auth, view["id"], "skipped")
    assert [(d["user_id"], d["reason"]) for d in skipped] == [("carol", "no_active_device")]
    assert len(factory.sent_ids()) == 3
