"""The README's walkthrough, run as written against a running `clarion serve`."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from tests.server import running_clarion

README = Path(__file__).parents[2] / "README.md"


def walkthrough_script() -> str:
    text = README.read_text()
    section = text.split("## Walkthrough", 1)[1]
    return re.search(r"```sh\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]


def test_readme_walkthrough_works_as_written(tmp_path: Path) -> None:
    # As a new user: no admin token or master key given, so both are generated.
    env = {"CLARION_ADMIN_TOKEN": "", "CLARION_SECRET_KEY": ""}
    with running_clarion("serve", tmp_path / "clarion-data", **env) as clarion:
        script = walkthrough_script().replace("localhost:8080", clarion.url.removeprefix("http://"))
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, capture_output=True,
                                text=True, timeout=120)
        log = clarion.log.read_text()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Clarion admin token (shown once" in log
    outputs = [json.loads(line) for line in re.findall(r"^\{.*\}$", result.stdout.replace("}{", "}\n{"), re.M)]
    user = next(o for o in outputs if o.get("user_id") == "alice" and "attributes" in o and "devices" not in o)
    assert user["timezone"] == "Europe/Vienna"
    export = next(o for o in outputs if "devices" in o and "user" in o)
    assert export["devices"][0]["platform"] == "ios" and export["preferences"]["types"] == {"promotional": False}
    notification = next(o for o in outputs if "counts" in o)
    assert notification["counts"]["targeted"] == 1
    delivery = next(o for o in outputs if "items" in o and o["items"] and "reason" in o["items"][0])["items"][0]
    assert (delivery["status"], delivery["reason"]) == ("failed", "no_credentials")
