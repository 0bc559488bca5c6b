#!/usr/bin/env python3
"""Benchmark `kvmready fleet summarize` over 10,000 reports, as a whole process.

    python bench/fleet_bench.py [--reports N] [--runs R] [--python PATH] [--keep DIR]

Standard library only.  Generates N reports (default 10,000) into a temporary
directory from the golden reports under tests/goldens (real captured hosts
and scenarios, each given its own hostname; written the way `kvmready check
--format json` writes them), plus a few malformed files, then times
`PYTHON -m kvmready fleet summarize DIR --format json` end to end (process
start, imports, reading, summarizing, writing to /dev/null) R times (default
5) after one warm-up run, and prints the median.  The issue's budget: under
2 seconds for 10,000 reports on the development machine.

Exit status: 0 when the median is under the budget, 1 when it is not, 2 when
the benchmark cannot run.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(REPO, "src")
GOLDENS = os.path.join(REPO, "tests", "goldens")
BUDGET_SECONDS = 2.0
MALFORMED = 10


def templates() -> list:
    reports = []
    for path in sorted(glob.glob(os.path.join(GOLDENS, "*", "*.json"))):
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        if isinstance(data, dict) and data.get("schema_version") == 1 and "checks" in data:
            reports.append(data)
    if not reports:
        raise SystemExit(f"fleet_bench: no golden reports under {GOLDENS}")
    return reports


def generate(directory: str, count: int) -> int:
    """`count` reports into `directory`; returns the total size in bytes."""
    sources = templates()
    total = 0
    for index in range(count):
        report = json.loads(json.dumps(sources[index % len(sources)]))
        report["host"]["hostname"] = f"host-{index:05d}"
        text = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
        with open(os.path.join(directory, f"host-{index:05d}.json"), "w", encoding="utf-8") as handle:
            handle.write(text)
        total += len(text)
    for index in range(MALFORMED):
        with open(os.path.join(directory, f"broken-{index}.json"), "w", encoding="utf-8") as handle:
            handle.write('{"schema_version": 1, "verdict": ' if index % 2 else "not json at all\n")
    return total


def run_once(python: str, directory: str) -> float:
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    command = [python, "-m", "kvmready", "fleet", "summarize", directory, "--format", "json"]
    start = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"fleet_bench: {' '.join(command)} exited {done.returncode}: {done.stderr.decode(errors='replace')}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reports", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--keep", metavar="DIR", help="generate into DIR and keep it (default: a temporary directory)")
    args = parser.parse_args()

    directory = args.keep or tempfile.mkdtemp(prefix="kvmready-fleet-bench-")
    os.makedirs(directory, exist_ok=True)
    try:
        size = generate(directory, args.reports)
        run_once(args.python, directory)  # warm-up: page cache, .pyc files
        times = [run_once(args.python, directory) for _ in range(args.runs)]
    finally:
        if not args.keep:
            shutil.rmtree(directory, ignore_errors=True)
    median = statistics.median(times)
    print(f"fleet summarize: {args.reports} reports ({size / 1e6:.1f} MB) + {MALFORMED} malformed, "
          f"{os.cpu_count()} CPUs, {args.python}")
    print("runs: " + ", ".join(f"{t:.3f} s" for t in times))
    verdict = "within" if median < BUDGET_SECONDS else "OVER"
    print(f"median: {median:.3f} s ({verdict} the {BUDGET_SECONDS:.0f} s budget)")
    return 0 if median < BUDGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
