"""bench/providers.py keeps working: a tiny run writes its JSON and Markdown."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_provider_benchmark_runs_at_tiny_size(tmp_path: Path) -> None:
    """Every client sends everything it is given, and the ratio to the ceiling is computed."""
    subprocess.run([sys.executable, str(ROOT / "bench" / "providers.py"), "--n", "400", "--out", str(tmp_path),
                    "--no-h2load"], check=True, capture_output=True, timeout=240, cwd=ROOT)
    results = json.loads((tmp_path / "providers.json").read_text())
    for name in ("h2_ceiling", "apns", "fcm", "webpush"):
        row = results[name]
        assert row["sends"] > 0 and row["sends_per_second"] > 0, name
        assert row.get("sent", row["sends"] - row.get("errors", 0)) == row["sends"], name
    assert results["apns_over_ceiling"] > 0 and results["webpush_encrypt_cpu_us"] > 0
    assert "APNs client / bare-h2 ceiling" in (tmp_path / "providers.md").read_text()
