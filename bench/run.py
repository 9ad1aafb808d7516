"""`make bench`: every benchmark of issue 7 in one run, on loopback, as one table.

    .venv/bin/python bench/run.py                  # full sizes (tens of minutes on 2 cores)
    .venv/bin/python bench/run.py --quick          # tiny sizes: the smoke test's run
    .venv/bin/python bench/run.py --size 20000 --sections 1,2,7

Sections (bench/README.md says what each measures and against what):
  1 ceiling: bare tuned h2 → fake APNs, and h2load (C) → fake APNs (the fake's own ceiling)
  2 provider clients alone: APNs, FCM, Web Push         (bench/providers.py)
  3 end to end, embedded: `clarion serve`               (bench/pipeline.py)
  4 end to end, scaled: PostgreSQL + RabbitMQ, 1 and 2 workers   (bench/pipeline.py)
  5 fan-out memory: 10,000 vs 1,000,000 devices         (bench/pipeline.py)
  6 API under wrk                                        (bench/api_load.py)
  7 peers: node-apn, Parse Server + push adapter, a pywebpush loop   (bench/peers/)

The machine is shared, so every figure is given as a ratio to the ceiling or
to a peer measured in this same run. Results: bench/results/bench-<time>.json
and .md, and latest.json / latest.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(ROOT), str(ROOT / "src"), str(BENCH), str(BENCH / "peers")]

import api_load  # noqa: E402
import apns_peers  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from tests.fakes.process import fake_in_subprocess  # noqa: E402

SIZES: dict[str, dict[str, Any]] = {
    # apns: sends for sections 1, 2 and node-apn (FCM and Web Push get a fifth);
    # broadcast: the end-to-end broadcast; parse: Parse Server's broadcasts.
    "full": {"apns": 50_000, "broadcast": 100_000, "parse": [5_000, 100_000], "pywebpush": 2_000,
             "api_seconds": 10, "api_connections": 32},
    "quick": {"apns": 300, "broadcast": 200, "parse": [200], "pywebpush": 30,
              "api_seconds": 1, "api_connections": 4},
}
ALL_SECTIONS = "1,2,3,4,5,6,7"


@dataclass
class Row:
    section: str
    measurement: str
    n: int | None = None
    per_second: float | None = None
    ratio: float | None = None
    ratio_to: str = ""
    cpu_per_10k: float | None = None
    fake_busy: float | None = None  # the fake's CPU seconds / wall seconds: near 1 means it was the limit
    note: str = ""


@dataclass
class Target:
    name: str
    value: float | None
    goal: str
    met: bool | None


class Run:
    """What one `bench/run.py` collects: raw results, table rows, targets, errors."""

    def __init__(self, sizes: dict[str, Any], work: Path) -> None:
        self.sizes, self.work = sizes, work
        self.raw: dict[str, Any] = {}
        self.rows: list[Row] = []
        self.targets: list[Target] = []
        self.errors: dict[str, str] = {}

    def rate(self, key: str) -> float | None:
        value = self.raw.get(key)
        return value.get("sends_per_second") if isinstance(value, dict) else None


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def cpu_per_10k(result: dict[str, Any] | None) -> float | None:
    if not result or result.get("cpu_seconds") is None or not result.get("sends"):
        return None
    return float(result["cpu_seconds"]) / result["sends"] * 10_000


def fake_busy(result: dict[str, Any] | None) -> float | None:
    if not result or result.get("fake_cpu_seconds") is None or not result.get("seconds"):
        return None
    return float(result["fake_cpu_seconds"]) / result["seconds"]


def target(run: Run, name: str, value: float | None, goal: str, met: Callable[[float], bool]) -> None:
    run.targets.append(Target(name, value, goal, None if value is None else met(value)))


def delivered_note(result: dict[str, Any]) -> str:
    sent, sends = result.get("sent"), result.get("sends")
    note = f"{sent:,}/{sends:,} accepted" if sent is not None and sends else ""
    if result.get("fake_requests") is not None:
        note += f"; fake answered {result['fake_requests']:,}"
    return note


# -- sections 1 and 2: bench/providers.py (helper-1's), run as a subprocess ------------------
def providers_section(run: Run) -> None:
    out = run.work / "providers"
    command = [sys.executable, str(BENCH / "providers.py"), "--n", str(run.sizes["apns"]), "--out", str(out)]
    if shutil.which("h2load") is None:
        command.append("--no-h2load")
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=3600)
    results = json.loads((out / "providers.json").read_text())
    run.raw["providers"] = results
    for key in ("h2_ceiling", "apns", "h2load_fake_apns", "fcm", "webpush"):
        if results.get(key):
            run.raw[key] = results[key]
    add_provider_rows(run, results)


def add_provider_rows(run: Run, results: dict[str, Any]) -> None:
    ceiling, fake = run.rate("h2_ceiling"), run.rate("h2load_fake_apns")
    specs = [
        ("1", "h2load (C) → fake APNs, 1 conn: the fake's own ceiling", "h2load_fake_apns", None, ""),
        ("1", "bare tuned h2 → fake APNs, 1 conn (ceiling)", "h2_ceiling", fake, "h2load → fake"),
        ("2", "Clarion APNsClient → fake APNs, 1 conn", "apns", ceiling, "bare-h2 ceiling"),
        ("2", "Clarion FCMClient → fake FCM (OAuth), 10 conns", "fcm", ceiling, "bare-h2 ceiling"),
        ("2", "Clarion WebPushClient → fake Web Push, 10 conns", "webpush", ceiling, "bare-h2 ceiling"),
    ]
    for section, label, key, base, base_label in specs:
        result = run.raw.get(key)
        if result:
            run.rows.append(Row(section, label, result.get("sends"), result["sends_per_second"],
                                ratio(result["sends_per_second"], base), base_label if base else "",
                                cpu_per_10k(result), fake_busy(result), delivered_note(result)))
    if results.get("webpush_encrypt_cpu_us") is not None:
        run.rows.append(Row("2", "Web Push RFC 8291 encryption, CPU µs per message", None, None, None, "",
                            results["webpush_encrypt_cpu_us"] / 100, None, "CPU column: s per 10k messages"))
    target(run, "APNs client / bare-h2 ceiling (issue 5)", ratio(run.rate("apns"), ceiling), "≥ 0.70",
           lambda v: v >= 0.70)
    target(run, "fake APNs busy during the bare-h2 ceiling (its CPU s / wall s; ~1 = the fake is the limit)",
           fake_busy(run.raw.get("h2_ceiling")), "< 0.80", lambda v: v < 0.80)


# -- sections 3, 4, 5: bench/pipeline.py (helper-3's) ----------------------------------------
PIPELINE_ROWS = [
    # (key in pipeline.json, section, label); all but embedded_ios are the mixed broadcast
    ("embedded", "3", "end to end, embedded (`clarion serve`, SQLite), mixed"),
    ("embedded_ios_large", "3", "end to end, embedded, iOS only"),
    ("embedded_ios", "3", "end to end, embedded, iOS only (Parse Server's broadcast)"),
    ("scaled_1", "4", "end to end, scaled: PostgreSQL + RabbitMQ, 1 worker, mixed"),
    ("scaled_2", "4", "end to end, scaled: PostgreSQL + RabbitMQ, 2 workers, mixed"),
]
CLIENT_OF = {"ios": "apns", "android": "fcm", "web": "webpush"}


def clients_alone_rate(run: Run, mix: dict[str, int]) -> float | None:
    """What the provider clients alone would do for this platform mix: each platform's share
    of the broadcast at its client's own rate, one after another (a weighted harmonic mean)."""
    rates = {platform: run.rate(CLIENT_OF[platform]) for platform in mix}
    if not all(rates.values()):
        return None
    total = sum(mix.values())
    return total / sum(weight / rates[platform] for platform, weight in mix.items())  # type: ignore[operator]


def pipeline_section(run: Run) -> None:
    script = BENCH / "pipeline.py"
    if not script.exists():
        raise RuntimeError("bench/pipeline.py is not there yet (issue 4's benchmark)")
    out = run.work / "pipeline"
    command = [sys.executable, str(script), "--size", str(run.sizes["broadcast"]), "--out", str(out),
               "--ios-size", str(min(run.sizes["parse"]))]
    if run.sizes["quick"]:
        command.append("--quick")
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=7200)
    results = json.loads((out / "pipeline.json").read_text())
    run.raw["pipeline"] = results
    add_pipeline_rows(run, results)


def add_pipeline_rows(run: Run, results: dict[str, Any]) -> None:
    mix = (results.get("embedded") or {}).get("mix") or {"ios": 1, "android": 1, "web": 1}
    alone, mixed_alone = run.rate("apns"), clients_alone_rate(run, mix)
    for key, section, label in PIPELINE_ROWS:
        result = results.get(key)
        if result:
            base, base_label = (alone, "APNsClient alone") if key.startswith("embedded_ios") else \
                (mixed_alone, "clients alone, same mix")
            rate = result.get("deliveries_per_second")
            note = f"{result.get('sent', '?'):,} sent" if isinstance(result.get("sent"), int) else ""
            if result.get("peak_rss_mb") is not None:
                note += f"; peak RSS {result['peak_rss_mb']:.0f} MB"
            cpu = result.get("cpu_seconds_per_100k")
            run.rows.append(Row(section, label, result.get("devices"), rate, ratio(rate, base), base_label,
                                cpu / 10 if cpu is not None else None, None, note))
    memory = results.get("fanout_memory") or {}
    small, large = memory.get("peak_rss_mb_10k"), memory.get("peak_rss_mb_1m")
    if small and large:
        run.rows.append(Row("5", "fan-out peak RSS, 1,000,000 vs 10,000 devices", None, None, large / small,
                            "10k-device RSS", None, None, f"{small:.0f} MB → {large:.0f} MB"))
    embedded, ios_only = results.get("embedded") or {}, results.get("embedded_ios_large") or {}
    target(run, "end-to-end embedded, mixed / provider clients alone for the same mix",
           ratio(embedded.get("deliveries_per_second"), mixed_alone), "≥ 0.50", lambda v: v >= 0.50)
    target(run, "end-to-end embedded, iOS only / APNs client alone",
           ratio(ios_only.get("deliveries_per_second"), alone), "≥ 0.50", lambda v: v >= 0.50)
    parse_sized = results.get("embedded_ios") or {}
    target(run, f"end-to-end embedded, iOS only, {parse_sized.get('devices', 0):,} devices / APNs client alone",
           ratio(parse_sized.get("deliveries_per_second"), alone), "report", lambda v: True)
    target(run, "end-to-end embedded, mixed / APNs client alone (the fastest client; stricter)",
           ratio(embedded.get("deliveries_per_second"), alone), "report", lambda v: True)
    if embedded.get("devices") and embedded.get("sent") is not None:
        target(run, "embedded broadcast delivered", embedded["sent"] / embedded["devices"], "= 1.00",
               lambda v: v >= 1.0)
    target(run, "fan-out memory, 1M / 10k devices", ratio(large, small), "< 1.5", lambda v: v < 1.5)


# -- section 6: the API under wrk ----------------------------------------------------------
def api_section(run: Run) -> None:
    results = api_load.measure(run.sizes["api_seconds"], run.sizes["api_connections"])
    run.raw["api"] = results
    devices = results["devices"]["requests_per_second"]
    for name, label in (("devices", "API POST /v1/devices"), ("notifications", "API POST /v1/notifications, 1 user")):
        result = results[name]
        run.rows.append(Row("6", f"{label} (wrk, {result['connections']} conns)", int(result["requests"]),
                            result["requests_per_second"], ratio(result["requests_per_second"], devices),
                            "POST /v1/devices", None, None,
                            f"p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms"))


# -- section 7: peers ------------------------------------------------------------------------
def apns_peers_section(run: Run) -> None:
    apns_peers.ensure_node_modules()
    with fake_in_subprocess("apns", record=False, fast_hpack=True) as fake:
        result = apns_peers.node_apn(fake, run.sizes["apns"], mode="window", inflight=1000)
        run.raw["node_apn"] = result
        run.rows.append(Row("7", "@parse/node-apn → fake APNs, 1 conn, 1,000 in flight", result["sends"],
                            result["sends_per_second"], ratio(result["sends_per_second"], run.rate("h2_ceiling")),
                            "bare-h2 ceiling", cpu_per_10k(result), fake_busy(result), delivered_note(result)))
        for n in run.sizes["parse"]:
            parse_broadcast(run, fake, n)
    target(run, "Clarion APNsClient / node-apn (one connection each)", ratio(run.rate("apns"), run.rate("node_apn")),
           "report", lambda v: True)


def parse_broadcast(run: Run, fake: Any, n: int) -> None:
    result = apns_peers.parse_server(fake, n)
    run.raw[f"parse_{n}"] = result
    run.rows.append(Row("7", f"Parse Server + push adapter, {n:,}-device broadcast (PostgreSQL)", n,
                        result["sends_per_second"], None, "", None, fake_busy(result),
                        f"{result['sent']:,} sent, {result['failed']:,} failed; fake answered "
                        f"{result['fake_requests']:,}"))


def pywebpush_section(run: Run) -> None:
    with fake_in_subprocess("webpush", record=False, decrypt=False) as fake:
        subscriptions = fake.call("subscribe", 100)
        config = {"subscriptions": subscriptions, "n": run.sizes["pywebpush"], "ca_pem_path": fake.info["ca_pem_path"]}
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as file:
            json.dump(config, file)
        try:
            done = subprocess.run([sys.executable, str(BENCH / "peers" / "pywebpush_loop.py"), file.name],
                                  check=True, capture_output=True, text=True, timeout=1800)
        finally:
            os.unlink(file.name)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    run.raw["pywebpush"] = result
    run.rows.append(Row("7", "plain pywebpush loop → fake Web Push (keep-alive session)", result["sends"],
                        result["sends_per_second"], ratio(result["sends_per_second"], run.rate("webpush")),
                        "Clarion WebPushClient", cpu_per_10k(result), None, delivered_note(result)))
    target(run, "Clarion Web Push / plain pywebpush loop", ratio(run.rate("webpush"), result["sends_per_second"]),
           "≥ 5", lambda v: v >= 5)


def parse_targets(run: Run) -> None:
    """Clarion's iOS-only broadcast (embedded) against Parse Server's of the same size (Parse sends iOS only)."""
    ios_only = ((run.raw.get("pipeline") or {}).get("embedded_ios") or {}).get("deliveries_per_second")
    smallest = min(run.sizes["parse"])
    target(run, f"Clarion embedded, iOS only / Parse Server (same {smallest:,}-device iOS broadcast)",
           ratio(ios_only, run.rate(f"parse_{smallest}")), "≥ 1", lambda v: v >= 1)
    for row in run.rows:
        if row.measurement.startswith("Parse Server") and ios_only:
            row.ratio, row.ratio_to = ratio(row.per_second, ios_only), "Clarion embedded, iOS only"


SECTIONS: list[tuple[str, str, Callable[[Run], None]]] = [
    ("1,2", "providers", providers_section),
    ("3,4,5", "pipeline", pipeline_section),
    ("6", "api", api_section),
    ("7", "apns peers", apns_peers_section),
    ("7", "pywebpush", pywebpush_section),
]


def run_sections(run: Run, wanted: set[str]) -> None:
    console = Console(stderr=True)
    for sections, name, function in SECTIONS:
        if not wanted & set(sections.split(",")):
            continue
        started = time.perf_counter()
        console.print(f"[bold]section {sections}: {name}[/bold] …")
        try:
            function(run)
        except Exception as exc:  # noqa: BLE001 -- one broken section must not hide the others' figures
            detail = exc.stderr if isinstance(exc, subprocess.CalledProcessError) else traceback.format_exc()
            run.errors[name] = f"{exc}\n{(detail or '')[-4000:]}"
            console.print(f"[red]section {sections} ({name}) failed:[/red] {exc}")
        console.print(f"  done in {time.perf_counter() - started:.0f} s")
    if "7" in wanted and "pipeline" in run.raw:
        parse_targets(run)


# -- output ----------------------------------------------------------------------------------
HEADERS = ["§", "measurement", "n", "per s", "ratio", "ratio to", "CPU s/10k", "fake busy", "note"]


def fmt(value: Any, pattern: str) -> str:
    return "—" if value is None else format(value, pattern)


def cells(row: Row) -> list[str]:
    return [row.section, row.measurement, fmt(row.n, ","), fmt(row.per_second, ",.0f"), fmt(row.ratio, ".2f"),
            row.ratio_to, fmt(row.cpu_per_10k, ".2f"), fmt(row.fake_busy, ".0%"), row.note]


def target_line(item: Target) -> str:
    verdict = {True: "met", False: "NOT met", None: "not measured"}[item.met]
    return f"{item.name}: {fmt(item.value, '.2f')} (goal {item.goal}) — {verdict}"


def print_table(run: Run, title: str) -> None:
    table = Table(title=title)
    for header in HEADERS:
        numeric = header in ("n", "per s", "ratio", "CPU s/10k", "fake busy")
        table.add_column(header, justify="right" if numeric else "left")
    for row in run.rows:
        table.add_row(*cells(row))
    console = Console(width=max(160, shutil.get_terminal_size().columns))
    console.print(table)
    for item in run.targets:
        console.print(("✔ " if item.met else "✘ " if item.met is False else "· ") + target_line(item))
    for name, error in run.errors.items():
        console.print(f"[red]failed: {name}[/red]: {error.splitlines()[0]}")


def markdown(run: Run, title: str) -> str:
    lines = [f"# {title}", "", "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in cells(row)) + " |" for row in run.rows]
    lines += ["", "Targets:", ""] + [f"- {target_line(item)}" for item in run.targets]
    if run.errors:
        lines += ["", "Failed sections:", ""]
        lines += [f"- {name}: {error.splitlines()[0]}" for name, error in run.errors.items()]
    return "\n".join(lines) + "\n"


def save(run: Run, out: Path, title: str, mode: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    document = {"title": title, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "mode": mode, "sizes": run.sizes,
                "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg()},
                "rows": [asdict(row) for row in run.rows], "targets": [asdict(item) for item in run.targets],
                "errors": run.errors, "raw": run.raw}
    text, md = json.dumps(document, indent=2, default=str) + "\n", markdown(run, title)
    for name in (f"bench-{stamp}", "latest"):
        (out / f"{name}.json").write_text(text)
        (out / f"{name}.md").write_text(md)
    return out / f"bench-{stamp}.json"


def sizes_for(args: argparse.Namespace) -> dict[str, Any]:
    sizes = {**SIZES["quick" if args.quick else "full"], "quick": args.quick}
    if args.size:
        sizes = {**sizes, "apns": args.size, "broadcast": args.size,
                 "parse": sorted({min(5_000, args.size), args.size})}
    return sizes


def main() -> int:
    parser = argparse.ArgumentParser(description="Every Clarion benchmark in one run; one table.")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (the smoke test)")
    parser.add_argument("--size", type=int, help="sends / devices per benchmark (overrides the defaults)")
    parser.add_argument("--sections", default=ALL_SECTIONS, help=f"comma-separated, default {ALL_SECTIONS}")
    parser.add_argument("--out", type=Path, default=BENCH / "results")
    args = parser.parse_args()
    mode = "quick" if args.quick else "full"
    with tempfile.TemporaryDirectory(prefix="clarion-bench-") as work:
        run = Run(sizes_for(args), Path(work))
        run_sections(run, set(args.sections.split(",")))
    title = f"Clarion benchmarks ({mode}, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, loopback)"
    print_table(run, title)
    saved = save(run, args.out, title, mode)
    Console().print(f"saved {saved} (and latest.json, latest.md)")
    return 1 if run.errors else 0


if __name__ == "__main__":
    sys.exit(main())
