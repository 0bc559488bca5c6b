#!/usr/bin/env python3
"""Scale: kvmready on a very large host and over a large fleet, against budgets.

    python bench/scale.py [--python PATH] [--json]

Standard library only.  Builds its inputs in a temporary directory, runs
each case as a whole process (`PYTHON -m kvmready ...`, PYTHONPATH=<repo>/src
unless the interpreter already imports kvmready) and reads the child's peak
RSS from wait4.  Cases and budgets:

- cpus-4096: `check --root` of a tree whose /proc/cpuinfo has 4096 CPUs
  (one real block of tests/fixtures/hosts/lscpu-x86_64-64cpu-linux6.2,
  renumbered): peak RSS < 40 MiB, the cpuinfo parse in process < 250 ms.
- sys-module-10k: a tree without /proc/modules and 10,000 /sys/module
  entries (a monolithic kernel): the module table in process < 50 ms.
- fleet-growth: `fleet summarize` over 1,000 and over 10,000 ready reports:
  peak RSS grows < 4 MiB (memory follows the hosts that are not ready, not
  the reports read).
- fleet-ones: one 16 MiB file of `1` lines (8 million malformed lines):
  < 2 s and peak RSS < 96 MiB.
- fleet-report-then-ones: one good report line, then `1` lines up to 16 MiB,
  so that it is JSON Lines and each of the 8.4 million lines counts as
  malformed: < 2 s and peak RSS < 96 MiB (24 s when each line went through
  json.loads and became an entry of its own).
- fleet-jsonl-20mib: one JSON Lines file of 1,450 ready reports (20 MiB,
  over the 16 MiB cap of one document): every report counted, < 2 s, peak
  RSS < 64 MiB (it is read a chunk at a time).

Exit status 0 when every budget holds, 1 when one fails, 2 when the
benchmark cannot run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(REPO, "src")
CPU_SOURCE = os.path.join(REPO, "tests", "fixtures", "hosts", "lscpu-x86_64-64cpu-linux6.2", "proc", "cpuinfo")
READY_REPORT = os.path.join(REPO, "tests", "goldens", "scenarios", "ready-amd-kvm.json")

BUDGETS = {
    "cpus_4096_rss_mib": 40.0,
    "cpus_4096_parse_ms": 250.0,
    "sys_module_10k_ms": 50.0,
    "fleet_growth_mib": 4.0,
    "fleet_ones_s": 2.0,
    "fleet_ones_rss_mib": 96.0,
    "fleet_report_then_ones_s": 2.0,
    "fleet_report_then_ones_rss_mib": 96.0,
    "fleet_jsonl_20mib_s": 2.0,
    "fleet_jsonl_20mib_rss_mib": 64.0,
    "fleet_jsonl_20mib_reports_missing": 1,  # less than one: all of them
}
JSONL_REPORTS = 1450


def run(python: str, args: List[str], env: Dict[str, str]) -> Tuple[float, float, int]:
    """(seconds, peak RSS in MiB, exit status) of one whole process."""
    started = time.perf_counter()
    with open(os.devnull, "wb") as null:
        child = subprocess.Popen([python, *args], stdout=null, stderr=null, env=env)
        _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - started, usage.ru_maxrss / 1024, child.returncode


def in_process(python: str, code: str, env: Dict[str, str]) -> float:
    """The median milliseconds that `code` prints (it prints one number per run)."""
    out = subprocess.run([python, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.split()
    values = sorted(float(value) for value in out)
    return values[len(values) // 2]


def big_cpu_tree(root: str) -> None:
    with open(CPU_SOURCE, encoding="utf-8") as handle:
        block = handle.read().split("\n\n")[0]
    os.makedirs(os.path.join(root, "proc", "sys", "kernel"))
    with open(os.path.join(root, "proc", "cpuinfo"), "w", encoding="utf-8") as handle:
        handle.write("\n\n".join(re.sub(r"^processor\s*:\s*\d+", f"processor\t: {cpu}", block, flags=re.M) for cpu in range(4096)) + "\n")
    with open(os.path.join(root, "proc", "sys", "kernel", "osrelease"), "w") as handle:
        handle.write("6.2.0\n")


def many_modules_tree(root: str) -> None:
    for index in range(10000):
        os.makedirs(os.path.join(root, "sys", "module", f"mod{index}"))
    for name in ("kvm", "kvm_intel"):
        os.makedirs(os.path.join(root, "sys", "module", name, "parameters"))
    with open(os.path.join(root, "sys", "module", "kvm_intel", "initstate"), "w") as handle:
        handle.write("live\n")


def fleet(directory: str, count: int) -> None:
    with open(READY_REPORT, encoding="utf-8") as handle:
        report = json.load(handle)
    os.makedirs(directory)
    for index in range(count):
        report["host"]["hostname"] = f"host-{index:05d}"
        with open(os.path.join(directory, f"host-{index:05d}.json"), "w", encoding="utf-8") as handle:
            json.dump(report, handle)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    env = dict(os.environ, PYTHONPATH=SRC, COLUMNS="80")
    if subprocess.run([args.python, "-c", "import kvmready"], env=env, capture_output=True).returncode:
        sys.stderr.write(f"scale.py: {args.python} cannot import kvmready\n")
        return 2
    work = tempfile.mkdtemp(prefix="kvmready-scale-")
    figures: Dict[str, Any] = {}
    try:
        cpus, modules = os.path.join(work, "cpus"), os.path.join(work, "modules")
        big_cpu_tree(cpus)
        many_modules_tree(modules)
        _, figures["cpus_4096_rss_mib"], _ = run(args.python, ["-m", "kvmready", "check", "--root", cpus, "--format", "json"], env)
        figures["cpus_4096_parse_ms"] = in_process(args.python, (
            "import time\nfrom kvmready.facts import cpuinfo\n"
            f"text = open({os.path.join(cpus, 'proc', 'cpuinfo')!r}).read()\n"
            "for _ in range(5):\n    t = time.perf_counter(); cpuinfo.parse(text); print((time.perf_counter() - t) * 1000)\n"), env)
        figures["sys_module_10k_ms"] = in_process(args.python, (
            "import time\nfrom kvmready.facts import modules\nfrom kvmready.host import DirectoryHost\n"
            "for _ in range(5):\n"
            f"    host = DirectoryHost({modules!r}); t = time.perf_counter(); modules.collect(host)\n"
            "    print((time.perf_counter() - t) * 1000)\n"), env)
        small, large = os.path.join(work, "fleet-1k"), os.path.join(work, "fleet-10k")
        fleet(small, 1000)
        fleet(large, 10000)
        _, rss_small, _ = run(args.python, ["-m", "kvmready", "fleet", "summarize", small, "--format", "json"], env)
        _, rss_large, _ = run(args.python, ["-m", "kvmready", "fleet", "summarize", large, "--format", "json"], env)
        figures["fleet_rss_1k_mib"], figures["fleet_rss_10k_mib"] = rss_small, rss_large
        figures["fleet_growth_mib"] = rss_large - rss_small
        ones = os.path.join(work, "ones.jsonl")
        ones_mib = "1\n" * (512 * 1024)  # written a MiB at a time: a lean parent (its RSS can floor the child's, see run)
        with open(ones, "w") as handle:
            for _ in range(16):
                handle.write(ones_mib)
        figures["fleet_ones_s"], figures["fleet_ones_rss_mib"], _ = run(args.python, ["-m", "kvmready", "fleet", "summarize", ones, "--format", "json"], env)
        with open(READY_REPORT, encoding="utf-8") as handle:
            report = json.load(handle)
        with open(ones, "w", encoding="utf-8") as handle:
            line = json.dumps(report) + "\n"
            handle.write(line)
            left = (16 * 1024 * 1024 - len(line)) // 2  # `1` lines up to 16 MiB: a file read whole, the heavier way
            while left:
                handle.write(ones_mib[: 2 * min(left, 512 * 1024)])
                left -= min(left, 512 * 1024)
        figures["fleet_report_then_ones_s"], figures["fleet_report_then_ones_rss_mib"], _ = run(
            args.python, ["-m", "kvmready", "fleet", "summarize", ones, "--format", "json"], env)
        os.unlink(ones)
        big, summary = os.path.join(work, "big.jsonl"), os.path.join(work, "summary.json")
        with open(big, "w", encoding="utf-8") as handle:
            for index in range(JSONL_REPORTS):
                report["host"]["hostname"] = f"host-{index:05d}"
                handle.write(json.dumps(report) + "\n")
        figures["fleet_jsonl_20mib_mib"] = os.path.getsize(big) / (1024 * 1024)
        figures["fleet_jsonl_20mib_s"], figures["fleet_jsonl_20mib_rss_mib"], _ = run(
            args.python, ["-m", "kvmready", "fleet", "summarize", big, "--format", "json", "-o", summary], env)
        try:
            with open(summary, encoding="utf-8") as handle:
                figures["fleet_jsonl_20mib_reports_missing"] = JSONL_REPORTS - json.load(handle)["inputs"]["reports"]
        except (OSError, ValueError, KeyError):
            figures["fleet_jsonl_20mib_reports_missing"] = JSONL_REPORTS
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results = {key: {"value": figures[key], "budget": limit, "ok": figures[key] < limit} for key, limit in BUDGETS.items()}
    failed = [key for key, result in results.items() if not result["ok"]]
    if args.json:
        sys.stdout.write(json.dumps({"figures": figures, "budgets": results, "failed": failed}, indent=2) + "\n")
    else:
        for key, result in results.items():
            sys.stdout.write(f"{key:<34} {result['value']:9.1f}  (budget < {result['budget']:g})  {'PASS' if result['ok'] else 'FAIL'}\n")
        sys.stdout.write(f"(fleet peak RSS: {figures['fleet_rss_1k_mib']:.1f} MiB at 1,000 reports, {figures['fleet_rss_10k_mib']:.1f} MiB at 10,000; "
                         f"the JSON Lines file: {figures['fleet_jsonl_20mib_mib']:.1f} MiB)\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
