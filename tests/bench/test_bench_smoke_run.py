"""`bench/run.py --quick`: every benchmark section runs at tiny size and reports its figures.

Benchmarks do not run in CI; this keeps them working. It needs what `make
bench` needs: node/npm (bench/peers is installed from the npm registry with
`npm ci` when node_modules is missing), wrk, h2load, and the machine's
PostgreSQL and RabbitMQ.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = {"1", "2", "3", "4", "5", "6", "7"}
QuickRun = tuple[subprocess.CompletedProcess[str], dict]

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.rabbitmq, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> QuickRun:
    out = tmp_path_factory.mktemp("bench-results")
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=850)
    latest = out / "latest.json"
    return done, json.loads(latest.read_text()) if latest.exists() else {}


def test_quick_run_succeeds_and_saves_json_and_markdown(quick_run: QuickRun) -> None:
    """The run exits 0 with no failed section, and writes latest.json with the table's rows."""
    done, results = quick_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert results["errors"] == {}
    assert results["mode"] == "quick"


def test_every_section_reports_a_figure(quick_run: QuickRun) -> None:
    """Sections 1–7 each contribute at least one row with a rate or a ratio."""
    _, results = quick_run
    reported = {row["section"] for row in results.get("rows", [])
                if row["per_second"] is not None or row["ratio"] is not None}
    assert reported == SECTIONS


def test_peers_and_clarion_deliver_everything_at_tiny_size(quick_run: QuickRun) -> None:
    """At tiny sizes nothing is lost: every peer's sends were accepted and counted by the fake."""
    _, results = quick_run
    raw = results.get("raw", {})
    for key in ("apns", "node_apn", "pywebpush", "parse_200"):
        assert raw[key]["sent"] == raw[key]["sends"], (key, raw[key])
    assert raw["node_apn"]["fake_requests"] >= raw["node_apn"]["sends"]
    assert raw["parse_200"]["fake_requests"] == 200


def test_ratios_are_computed_against_this_runs_ceiling(quick_run: QuickRun) -> None:
    """The APNs client's ratio is its rate over the bare-h2 ceiling measured in the same run."""
    _, results = quick_run
    row = next(row for row in results["rows"] if row["measurement"].startswith("Clarion APNsClient"))
    ceiling = results["raw"]["h2_ceiling"]["sends_per_second"]
    assert row["ratio_to"] == "bare-h2 ceiling"
    assert row["ratio"] == pytest.approx(row["per_second"] / ceiling)


def test_mixed_broadcast_is_compared_with_the_clients_alone_for_the_same_mix(quick_run: QuickRun) -> None:
    """The mixed end-to-end rate is divided by the weighted harmonic mean of the three clients' rates."""
    _, results = quick_run
    raw = results["raw"]
    alone = 3 / sum(1 / raw[client]["sends_per_second"] for client in ("apns", "fcm", "webpush"))
    row = next(row for row in results["rows"] if row["measurement"].startswith("end to end, embedded (`clarion"))
    assert row["ratio_to"] == "clients alone, same mix"
    assert row["ratio"] == pytest.approx(raw["pipeline"]["embedded"]["deliveries_per_second"] / alone)
    ios = next(row for row in results["rows"] if row["measurement"] == "end to end, embedded, iOS only")
    assert ios["ratio"] == pytest.approx(ios["per_second"] / raw["apns"]["sends_per_second"])


def test_markdown_table_is_saved_next_to_the_json(tmp_path: Path) -> None:
    """Only the API section, run on its own: latest.md holds the table and both endpoints' latencies."""
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--sections", "6",
                           "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    markdown = (tmp_path / "latest.md").read_text()
    assert "| § | measurement |" in markdown
    assert "POST /v1/devices" in markdown and "POST /v1/notifications" in markdown
    assert "p99" in markdown
    assert len(list(tmp_path.glob("bench-*.json"))) == 1
