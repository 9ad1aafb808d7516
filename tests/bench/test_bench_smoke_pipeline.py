"""bench/pipeline.py keeps working: a tiny run of sections 3–5 writes the JSON run.py reads.

It needs what `make bench` needs: the machine's PostgreSQL and RabbitMQ.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEVICES = 240
IOS_DEVICES = 120
pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("pipeline-bench")
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "pipeline.py"), "--size", str(DEVICES), "--quick",
                           "--fanout", "500,5000", "--ios-size", str(IOS_DEVICES), "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "end to end" in done.stdout  # the table was printed
    return json.loads((out / "pipeline.json").read_text())


@pytest.mark.parametrize("key", ["embedded", "scaled_1", "scaled_2"])
def test_every_device_is_sent_and_measured(results: dict, key: str) -> None:
    """Each broadcast reaches every seeded device through the fakes, with a rate, CPU and RSS."""
    row = results[key]
    assert row["devices"] == DEVICES and row["sent"] == DEVICES, row["counts"]
    assert row["deliveries_per_second"] > 0 and row["cpu_seconds_per_100k"] > 0
    assert row["peak_rss_mb"] > 10
    assert all(seconds >= 0 for seconds in row["cpu_seconds"].values())
    assert row["cpu_seconds"]["fake_apns"] > 0 and row["cpu_seconds"]["fake_webpush"] > 0


@pytest.mark.parametrize(("key", "devices"), [("embedded_ios", IOS_DEVICES), ("embedded_ios_large", DEVICES)])
def test_ios_only_broadcasts_reach_only_apns(results: dict, key: str, devices: int) -> None:
    """The iOS-only runs (Parse Server's size, the broadcast size) send every device, through the fake APNs only."""
    row = results[key]
    assert row["devices"] == devices and row["sent"] == devices, row["counts"]
    assert row["mix"] == {"ios": 1}
    assert row["cpu_seconds"]["fake_apns"] > 0 and row["cpu_seconds"]["fake_fcm"] < 0.5


def test_scaled_runs_count_every_worker(results: dict) -> None:
    """Two workers are two measured processes beside the API."""
    assert sum(name.startswith("clarion_worker") for name in results["scaled_1"]["cpu_seconds"]) == 1
    assert sum(name.startswith("clarion_worker") for name in results["scaled_2"]["cpu_seconds"]) == 2


def test_fanout_memory_pair_is_reported(results: dict) -> None:
    """Both fan-outs ran to the end and their peak RSS is in the keys run.py reads."""
    memory = results["fanout_memory"]
    assert (memory["devices_small"], memory["devices_large"]) == (500, 5000)
    assert memory["peak_rss_mb_10k"] > 10 and memory["peak_rss_mb_1m"] > 10
    assert memory["ratio"] == pytest.approx(memory["peak_rss_mb_1m"] / memory["peak_rss_mb_10k"])
