#!/usr/bin/env python3
"""Start-up benchmark for kvmready: whole-process runs, peak RSS, in-process phases.

    python bench/startup.py [--runs N] [--warmup K] [--python PATH] [--json]

Standard library only.  Every command runs in the interpreter given by
--python (default: the one running this script), so the baseline
(`python -c "import typer"`) and kvmready share it.  Commands are
interleaved round-robin (with a rotating start) after the warm-up rounds,
so drift on the machine affects all of them alike.  Wall time is
time.perf_counter around os.posix_spawn + os.wait4; peak RSS is the
child's ru_maxrss from os.wait4 (KiB on Linux).

The in-process phases (facts, live, checks, render, the live KVM probe on
its own, snapshot capture) are measured in a child process of the same
interpreter, with fresh Facts per iteration and warm imports.

Exit status: 0 when every budget holds, 1 when one fails (or a budgeted
figure could not be measured), 2 when the benchmark itself cannot run.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(REPO, "src")
FIXTURE = os.path.join(REPO, "tests", "fixtures", "hosts", "firecracker-pvm-host")

# -- budgets: one place, each with where it comes from ---------------------------
BUDGETS: Dict[str, Dict[str, Any]] = {
    # Issue "start-up benchmark": `check --format json` at most 1.35x the
    # Typer-import baseline (`python -c "import typer"`, same interpreter).
    "check_json_ratio": {"limit": 1.35, "unit": "x baseline", "what": "check --format json / baseline (medians)"},
    # Same issue: `check` with the rich table at most 1.8x the baseline.
    "check_table_ratio": {"limit": 1.8, "unit": "x baseline", "what": "check (table) / baseline (medians)"},
    # Same issue: peak RSS under 40 MiB (the largest ru_maxrss of any kvmready run).
    "peak_rss_mib": {"limit": 40.0, "unit": "MiB", "what": "peak RSS over every kvmready run"},
    # Same issue: the facts + checks phases under 10 ms in process (median of per-iteration sums).
    "facts_checks_ms": {"limit": 10.0, "unit": "ms", "what": "facts + checks phases in process (median)"},
    # Issue "live KVM checks": "well under 20 ms for all of them together"
    # (probe_kvm: open, API version, capabilities, create VM, run the guest).
    "live_kvm_ms": {"limit": 20.0, "unit": "ms", "what": "live KVM probe in process (median)"},
    # Issue "snapshot": "Snapshot size for this machine under 64 KiB".
    "snapshot_bytes": {"limit": 64 * 1024, "unit": "bytes", "what": "`kvmready snapshot` archive size"},
}

# Exit codes that are verdicts (0 ready, 1 not ready, 3 indeterminate), not failures.
VERDICT_CODES = {0, 1, 3}
STATIC_FACTS = ("cpu", "kernel", "arch", "modules", "devices", "memory", "os", "hypervisor", "firmware", "groups", "hostname")
PARAM_MODULES = ("kvm", "kvm_intel", "kvm_amd", "kvm_pvm")


# -- statistics ------------------------------------------------------------------
def summarize(values: List[float]) -> Optional[Dict[str, float]]:
    if not values:
        return None
    ordered = sorted(values)
    count = len(ordered)
    return {
        "n": count,
        "median": statistics.median(ordered),
        "min": ordered[0],
        "p90": ordered[max(0, math.ceil(0.9 * count) - 1)],  # nearest rank
        "max": ordered[-1],
        "mean": statistics.fmean(ordered),
        "stdev": statistics.stdev(ordered) if count > 1 else 0.0,
    }


# -- the in-process phases (runs in a child: `<python> startup.py --_phases`) ------
def phases_main(runs: int, warmup: int) -> int:
    started = time.perf_counter()
    try:
        import kvmready
    except ImportError:  # not installed: the working tree
        sys.path.insert(0, SRC)
        import kvmready
    from kvmready.facts import Facts
    from kvmready.facts.live import LiveSystem, probe_kvm
    from kvmready.host import DirectoryHost
    from kvmready.model import Target
    from kvmready.render import OutputFormat
    from kvmready.runner import build_report, run

    import_ms = (time.perf_counter() - started) * 1000
    out: Dict[str, Any] = {"kvmready_file": kvmready.__file__, "import_ms_cold": import_ms, "errors": {}}
    samples: Dict[str, List[float]] = {k: [] for k in ("facts", "live", "checks", "facts_checks", "render_json", "render_table")}
    first: Dict[str, float] = {}
    extra_facts: set = set()

    def one_iteration() -> Dict[str, float]:
        t0 = time.perf_counter()
        facts = Facts(DirectoryHost("/"), live_system=LiveSystem(), vm_dir="~/vmware")
        for name in STATIC_FACTS:
            try:
                getattr(facts, name)
            except Exception as error:  # a kept parser error: the checks report it, the bench notes it
                out["errors"].setdefault(f"facts.{name}", f"{type(error).__name__}: {error}")
        for name in PARAM_MODULES:
            try:
                facts.module_params(name)
            except Exception as error:
                out["errors"].setdefault(f"facts.module_params({name})", f"{type(error).__name__}: {error}")
        t1 = time.perf_counter()
        try:
            facts.live
        except Exception as error:
            out["errors"].setdefault("facts.live", f"{type(error).__name__}: {error}")
        t2 = time.perf_counter()
        before = set(getattr(facts, "_memo", {}))
        results = run(facts, Target.WORKSTATION)
        report = build_report(facts, Target.WORKSTATION, results)
        t3 = time.perf_counter()
        extra_facts.update(set(getattr(facts, "_memo", {})) - before)
        OutputFormat.JSON.renderer(width=80, color=False).render(report)
        t4 = time.perf_counter()
        OutputFormat.TABLE.renderer(width=80, color=False).render(report)
        t5 = time.perf_counter()
        return {
            "facts": (t1 - t0) * 1000,
            "live": (t2 - t1) * 1000,
            "checks": (t3 - t2) * 1000,
            "facts_checks": ((t1 - t0) + (t3 - t2)) * 1000,
            "render_json": (t4 - t3) * 1000,
            "render_table": (t5 - t4) * 1000,
        }

    for index in range(warmup + runs):
        timing = one_iteration()
        if index == 0:
            first = timing  # cold: lazy imports (kvmapi, ctypes, summary, rich) happen here
        if index >= warmup:
            for key, value in timing.items():
                samples[key].append(value)
    out["first_iteration_ms"] = first
    out["facts_computed_during_checks"] = sorted(extra_facts)

    kvm_samples: List[float] = []
    kvm_self: List[float] = []
    guest: List[float] = []
    kvm_note = None
    for index in range(warmup + runs):
        t0 = time.perf_counter()
        result = probe_kvm(LiveSystem())
        elapsed = (time.perf_counter() - t0) * 1000
        if result.open_error is not None:
            kvm_note = f"/dev/kvm: {result.open_error}"
            break
        if index >= warmup:
            kvm_samples.append(elapsed)
            kvm_self.append(result.duration_ns / 1e6)
            if result.guest is not None:
                guest.append(result.guest.duration_ns / 1e6)
        if result.guest is None and kvm_note is None:
            kvm_note = f"no guest run: {result.create_vm_error or result.guest_error}"
    out["live_kvm_note"] = kvm_note

    capture_samples: List[float] = []
    archive_bytes = None
    try:
        from kvmready.orchestration import capture_snapshot as capture
    except ImportError as error:
        out["capture_note"] = f"unavailable: {error}"
    else:
        for index in range(min(warmup, 2) + min(runs, 10)):
            t0 = time.perf_counter()
            try:
                archive, _manifest = capture("~/vmware")
            except Exception as error:
                out["capture_note"] = f"capture failed: {type(error).__name__}: {error}"
                break
            if index >= min(warmup, 2):
                capture_samples.append((time.perf_counter() - t0) * 1000)
            archive_bytes = len(archive)
    out["capture_archive_bytes"] = archive_bytes

    out["phases"] = {key: summarize(values) for key, values in samples.items()}
    out["phases"]["live_kvm"] = summarize(kvm_samples)
    out["phases"]["live_kvm_self_reported"] = summarize(kvm_self)
    out["phases"]["kvm_guest_run"] = summarize(guest)
    out["phases"]["snapshot_capture"] = summarize(capture_samples)
    json.dump(out, sys.stdout)
    return 0


# -- whole-process runs ----------------------------------------------------------
class Command:
    def __init__(self, key: str, label: str, argv: List[str], kvmready: bool = True, optional: bool = False) -> None:
        self.key = key
        self.label = label
        self.argv = argv
        self.kvmready = kvmready
        self.optional = optional
        self.times: List[float] = []
        self.rss_kib: List[int] = []
        self.codes: Dict[int, int] = {}
        self.failures = 0
        self.first_failure: Optional[str] = None
        self.unavailable: Optional[str] = None
        self.info: Dict[str, Any] = {}


def tail(text: str, lines: int = 3) -> str:
    return " | ".join(line for line in text.strip().splitlines()[-lines:])


# The timed runs happen in a lean helper (`python -I -S -c SPAWNER`), not in this
# process: posix_spawn uses vfork, and Linux then charges the *parent's* peak RSS
# to the child's ru_maxrss (exec_mmap -> setmax_mm_hiwater_rss on the old mm).
# From this process (argparse, json, subprocess, ...) that floor is ~15 MiB,
# above `python -c "import typer"` itself; from the helper it is ~9.5 MiB.
SPAWNER = r"""
import json, os, resource, sys, time
plan = json.load(open(sys.argv[1]))
env, errfile, commands = plan["env"], plan["errfile"], plan["commands"]
actions = [
    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
    (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
    (os.POSIX_SPAWN_OPEN, 2, errfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
]
records = []
for round_index in range(plan["warmup"] + plan["runs"]):
    shift = round_index % len(commands)
    for index in list(range(shift, len(commands))) + list(range(shift)):
        argv = commands[index]
        started = time.perf_counter()
        pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
        _, status, usage = os.wait4(pid, 0)
        elapsed = time.perf_counter() - started
        if round_index < plan["warmup"]:
            continue
        code = os.waitstatus_to_exitcode(status)
        with open(errfile, errors="replace") as handle:  # outside the timing
            stderr = handle.read()
        bad = code not in (0, 1, 3) or "Traceback (most recent call last)" in stderr
        records.append([index, elapsed * 1000, code, usage.ru_maxrss, stderr[-600:] if bad else None])
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[Kround %d/%d%s" % (round_index + 1, plan["warmup"] + plan["runs"],
                                                  " (warm-up)" if round_index < plan["warmup"] else ""))
        sys.stderr.flush()
# The floor is this helper's own memory high-water mark (VmHWM), which vfork lends to every child;
# getrusage would also include what the bench process lent to this helper.
floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with open("/proc/self/status") as handle:
    for line in handle:
        if line.startswith("VmHWM:"):
            floor = int(line.split()[1])
json.dump({"records": records, "floor_kib": floor}, open(sys.argv[2], "w"))
"""


def is_failure(code: int, stderr: str) -> bool:
    return code not in VERDICT_CODES or "Traceback (most recent call last)" in stderr


def validate(command: Command, env: Dict[str, str]) -> None:
    """One untimed run with captured output: is the command there, does it work."""
    proc = subprocess.run(command.argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if command.optional and proc.returncode == 2 and "No such command" in proc.stderr:
        line = next(line for line in proc.stderr.splitlines() if "No such command" in line)
        command.unavailable = "unavailable: " + line.strip(" │|\t")  # typer draws a box around usage errors
        return
    if is_failure(proc.returncode, proc.stderr):
        command.first_failure = f"exit {proc.returncode}: {tail(proc.stderr)}"
    if command.key == "check_json" and proc.returncode in VERDICT_CODES:
        try:
            data = json.loads(proc.stdout)
            command.info["verdict"] = data.get("verdict")
            command.info["summary"] = data.get("summary")
        except ValueError as error:
            command.first_failure = f"stdout is not JSON: {error}"


def choose_launcher(python: str, mode: str) -> tuple:
    """The console script next to the interpreter when it uses that interpreter, else `-m kvmready`."""
    bindir = os.path.dirname(os.path.abspath(python))
    script = os.path.join(bindir, "kvmready")
    why = None
    if mode in ("auto", "script") and os.path.isfile(script) and os.access(script, os.X_OK):
        with open(script, "rb") as handle:
            first_line = handle.readline().decode("utf-8", "replace").strip()
        interpreter = first_line[2:].strip().split()[0] if first_line.startswith("#!") else ""
        if interpreter and os.path.dirname(interpreter) == bindir:
            return [script], f"console script {script} (shebang {interpreter})", {}
        why = f"{script} runs {interpreter or 'an unknown interpreter'}, not {python}"
    elif mode == "script":
        why = f"no console script at {script}"
    extra = {"PYTHONPATH": SRC + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")}
    label = f"{python} -m kvmready with PYTHONPATH={SRC}"
    return [python, "-m", "kvmready"], label + (f" ({why})" if why else ""), extra


PYC_CHECK = """
import importlib.util, os, kvmready
root = os.path.dirname(kvmready.__file__)
for name in ("__init__", "cli", "runner", "model", "host", "facts/__init__", "checks/__init__"):
    source = os.path.join(root, name + ".py")
    if os.path.exists(source) and not os.path.exists(importlib.util.cache_from_source(source)):
        print(name)
"""


def tiny_fixture(directory: str) -> str:
    """A minimal host tree, used only when the real fixture is missing."""
    files = {
        "proc/cpuinfo": "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Bench CPU\nflags\t\t: fpu vmx constant_tsc nonstop_tsc\n\n",
        "proc/meminfo": "MemTotal:       16384000 kB\n",
        "proc/sys/kernel/osrelease": "6.8.0-bench\n",
        "proc/modules": "kvm_intel 1 0 - Live 0x0\nkvm 1 1 kvm_intel, Live 0x0\n",
        "etc/os-release": 'ID=debian\nVERSION_ID="12"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n',
        "sys/module/kvm/parameters/enable_vmware_backdoor": "N\n",
    }
    for path, text in files.items():
        full = os.path.join(directory, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as handle:
            handle.write(text)
    return directory


def measure_processes(python: str, commands: List[Command], env: Dict[str, str], runs: int, warmup: int, workdir: str) -> int:
    """Round-robin timed runs in the lean helper; fills the commands; returns the RSS floor in KiB."""
    active = [c for c in commands if c.unavailable is None]
    plan_file = os.path.join(workdir, "plan.json")
    result_file = os.path.join(workdir, "result.json")
    with open(plan_file, "w") as handle:
        json.dump({"env": env, "errfile": os.path.join(workdir, "stderr.txt"), "runs": runs, "warmup": warmup,
                   "commands": [c.argv for c in active]}, handle)
    subprocess.run([python, "-I", "-S", "-c", SPAWNER, plan_file, result_file], check=True)
    with open(result_file) as handle:
        result = json.load(handle)
    for index, elapsed, code, rss, stderr in result["records"]:
        command = active[index]
        command.codes[code] = command.codes.get(code, 0) + 1
        if stderr is not None:
            command.failures += 1
            command.first_failure = command.first_failure or f"exit {code}: {tail(stderr)}"
            continue
        command.times.append(elapsed)
        command.rss_kib.append(rss)
    return result["floor_kib"]


# -- budgets and output ----------------------------------------------------------
def verdict(key: str, value: Optional[float], note: Optional[str] = None) -> Dict[str, Any]:
    budget = BUDGETS[key]
    entry = {"key": key, "what": budget["what"], "limit": budget["limit"], "unit": budget["unit"], "value": value}
    if value is None:
        entry["status"] = "n/a" if note else "FAIL"
        entry["note"] = note or "could not be measured"
    else:
        entry["status"] = "PASS" if value <= budget["limit"] else "FAIL"
        entry["over_by_pct"] = (value / budget["limit"] - 1) * 100
    return entry


def fmt(value: Optional[float], digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render_text(result: Dict[str, Any]) -> str:
    lines: List[str] = []
    env = result["environment"]
    lines.append(f"kvmready start-up benchmark · {env['when']} · {env['host']} · {env['cpus']} CPUs · load {env['loadavg_before']} -> {env['loadavg_after']}")
    lines.append(f"python   {env['python']} ({env['python_version']})")
    lines.append(f"kvmready {result['launcher']}")
    lines.append(f"         imports {env['kvmready_file']}")
    lines.append(f"runs     {result['runs']} timed + {result['warmup']} warm-up rounds, round-robin (rotating start); medians in ms")
    lines.append(f"fixture  {result['fixture']}")
    lines.append("")
    header = f"{'command':<34} {'median':>7} {'min':>7} {'p90':>7} {'ratio':>6} {'+ms':>6} {'RSS MiB':>7}  {'budget':<8} {'status':<6}"
    lines.append(header)
    lines.append("-" * len(header))
    for row in result["commands"]:
        stats = row["wall_ms"]
        budget = row.get("budget")
        status = row.get("status", "")
        if row.get("unavailable"):
            lines.append(f"{row['label']:<34} {row['unavailable']}")
            continue
        if stats is None:
            lines.append(f"{row['label']:<34} no successful run: {row.get('first_failure')}")
            continue
        ratio = row.get("ratio")
        over = row.get("over_baseline_ms")
        rss = fmt(row["peak_rss_mib"])
        if row["peak_rss_mib"] is not None and row["peak_rss_mib"] <= result["rss_floor_mib"] + 0.25:
            rss = "<=" + rss  # at the spawn floor: an upper bound
        lines.append(
            f"{row['label']:<34} {fmt(stats['median']):>7} {fmt(stats['min']):>7} {fmt(stats['p90']):>7} "
            f"{fmt(ratio, 2) + 'x' if ratio is not None else '-':>6} {fmt(over) if over is not None else '-':>6} "
            f"{rss:>7}  {budget or '':<8} {status:<6}"
        )
        if row.get("failures"):
            lines.append(f"{'':<34} ! {row['failures']} failed runs; first: {row['first_failure']}")
        codes = row.get("exit_codes") or {}
        if any(code not in ("0", "1") for code in codes):
            lines.append(f"{'':<34} exit codes {codes}")
    lines.append(f"(ratio = median / baseline median; +ms = median - baseline median; RSS = max ru_maxrss over the runs;"
                 f" the spawn floor is {fmt(result['rss_floor_mib'])} MiB: a value at the floor is an upper bound)")
    if result.get("snapshot_bytes") is not None:
        lines.append(f"snapshot archive: {result['snapshot_bytes']} bytes ({result['snapshot_bytes'] / 1024:.1f} KiB)")

    phases = result.get("phases")
    if phases:
        lines.append("")
        lines.append("in process (fresh Facts each iteration, imports warm; median of the timed iterations)")
        header = f"{'phase':<34} {'median':>7} {'min':>7} {'p90':>7} {'cold 1st':>8}  {'budget':<8} {'status':<6}"
        lines.append(header)
        lines.append("-" * len(header))
        first = phases.get("first_iteration_ms") or {}
        budgets = {b["key"]: b for b in result["budgets"]}
        rows = [
            ("facts (static: files, /sys, cpuid)", "facts", None),
            ("live (KVM probe, creds, MSR, disk)", "live", None),
            ("checks (run + build_report)", "checks", None),
            ("facts + checks", "facts_checks", "facts_checks_ms"),
            ("render json", "render_json", None),
            ("render table (rich)", "render_table", None),
            ("live KVM checks alone (probe_kvm)", "live_kvm", "live_kvm_ms"),
            ("  of which guest run", "kvm_guest_run", None),
            ("snapshot capture (in process)", "snapshot_capture", None),
        ]
        for label, key, budget_key in rows:
            stats = phases["phases"].get(key)
            if stats is None:
                lines.append(f"{label:<34} -")
                continue
            budget = budgets.get(budget_key) if budget_key else None
            lines.append(
                f"{label:<34} {fmt(stats['median'], 2):>7} {fmt(stats['min'], 2):>7} {fmt(stats['p90'], 2):>7} "
                f"{fmt(first.get(key), 2) if key in first else '':>8}  "
                f"{('< ' + format(budget['limit'], 'g') + ' ms') if budget else '':<8} {budget['status'] if budget else '':<6}"
            )
        lines.append(f"(in-process import of kvmready, once, cold: {fmt(phases.get('import_ms_cold'))} ms; kvmready {phases.get('kvmready_file')})")
        if phases.get("facts_computed_during_checks"):
            lines.append(f"(facts first computed inside the checks phase: {', '.join(phases['facts_computed_during_checks'])})")
        for note_key in ("live_kvm_note", "capture_note"):
            if phases.get(note_key):
                lines.append(f"note: {phases[note_key]}")
        for name, message in (phases.get("errors") or {}).items():
            lines.append(f"note: {name} raised {message}")
    elif result.get("phases_error"):
        lines.append("")
        lines.append(f"in-process phases failed: {result['phases_error']}")

    lines.append("")
    lines.append("budgets")
    for budget in result["budgets"]:
        value = budget["value"]
        if value is None:
            shown = budget.get("note", "")
        elif budget["unit"] == "bytes":
            shown = f"{value:.0f} bytes <= {budget['limit']} bytes"
        else:
            shown = f"{value:.2f} {budget['unit']} <= {budget['limit']:g}"
        extra = ""
        if "over_by_pct" in budget:
            pct = budget["over_by_pct"]
            extra = f" ({pct:.0f}% over)" if pct > 0 else f" ({-pct:.0f}% headroom)"
        lines.append(f"  {budget['status']:<5} {budget['what']:<46} {shown}{extra}")
    lines.append(f"exit {result['exit_code']}: {'every budget holds' if result['exit_code'] == 0 else 'a budget fails'}")
    for note in result["notes"]:
        lines.append(f"note: {note}")
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="kvmready start-up benchmark (see bench/README.md)")
    parser.add_argument("--runs", type=int, default=30, help="timed rounds (default 30)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed warm-up rounds first (default 5)")
    parser.add_argument("--python", default=sys.executable, help="interpreter for every run (default: this one)")
    parser.add_argument("--launcher", choices=("auto", "script", "module"), default="auto",
                        help="auto: the console script next to --python if it uses it, else `-m kvmready`")
    parser.add_argument("--fixture", default=FIXTURE, help="host tree for the --root row")
    parser.add_argument("--keep-env", action="store_true",
                        help="keep PYTHONDONTWRITEBYTECODE if set (then kvmready compiles from source on every run)")
    parser.add_argument("--no-phases", action="store_true", help="skip the in-process phases")
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    parser.add_argument("--save", action="store_true", help="also write the JSON to bench/results/startup-<time>.json")
    parser.add_argument("--_phases", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._phases:
        return phases_main(args.runs, args.warmup)
    if args.runs < 1 or args.warmup < 0:
        parser.error("--runs must be >= 1 and --warmup >= 0")

    def progress(message: str) -> None:
        if sys.stderr.isatty():
            sys.stderr.write(f"\r\033[K{message}")
            sys.stderr.flush()

    python = os.path.abspath(args.python) if os.sep in args.python else (shutil.which(args.python) or args.python)
    notes: List[str] = []
    launcher, launcher_label, extra_env = choose_launcher(python, "module" if args.launcher == "module" else args.launcher)
    env = dict(os.environ, COLUMNS="80", **extra_env)
    if env.get("PYTHONDONTWRITEBYTECODE") and not args.keep_env:
        # Installed packages (typer) have .pyc files from pip; without them kvmready would be compiled
        # from source on every run (+20 ms here) while the baseline is not: not what users run.
        env.pop("PYTHONDONTWRITEBYTECODE")
        notes.append("PYTHONDONTWRITEBYTECODE was set; it is removed for the runs so kvmready's .pyc files are "
                     "written and used, as after `pip install` (--keep-env keeps it)")

    probe = subprocess.run([python, "-c", "import sys, kvmready; print(kvmready.__file__); print(sys.version.split()[0])"],
                           env=env, capture_output=True, text=True)
    if probe.returncode != 0:
        sys.stderr.write(f"startup.py: {python} cannot import kvmready: {tail(probe.stderr, 1)}\n")
        return 2
    kvmready_file, python_version = probe.stdout.split()[:2]
    if not os.path.abspath(kvmready_file).startswith(SRC + os.sep):
        notes.append(f"kvmready is imported from {kvmready_file}, not this working tree ({SRC})")
    else:
        notes.append(f"kvmready comes from the working tree {SRC}: edits made while the benchmark runs are measured too")

    workdir = tempfile.mkdtemp(prefix="kvmready-bench-")
    try:
        fixture = os.path.abspath(args.fixture)
        if os.path.isdir(fixture):
            fixture_label = os.path.relpath(fixture, REPO) if fixture.startswith(REPO + os.sep) else fixture
        else:
            fixture = tiny_fixture(os.path.join(workdir, "host"))
            fixture_label = f"{fixture} (generated: {args.fixture} is missing)"
            notes.append(f"the --root fixture {args.fixture} is missing; a tiny generated tree was used")
        snapshot_file = os.path.join(workdir, "snapshot.tar.gz")
        commands = [
            Command("interpreter", 'python -c "pass" (floor)', [python, "-c", "pass"], kvmready=False),
            Command("baseline", 'python -c "import typer" (base)', [python, "-c", "import typer"], kvmready=False),
            Command("check_json", "kvmready check --format json", launcher + ["check", "--format", "json"]),
            Command("check_table", "kvmready check (table)", launcher + ["check"]),
            Command("check_root", "kvmready check --root FIXTURE", launcher + ["check", "--root", fixture]),
            Command("version", "kvmready --version", launcher + ["--version"]),
            Command("snapshot", "kvmready snapshot -o FILE", launcher + ["snapshot", "-o", snapshot_file], optional=True),
        ]
        loadavg_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
        for command in commands:
            validate(command, env)
        baseline = commands[1]
        if baseline.first_failure:
            sys.stderr.write(f"startup.py: the baseline fails ({baseline.first_failure}); "
                             f"is typer installed for {python}? Pass --python\n")
            return 2
        rss_floor_kib = measure_processes(python, commands, env, args.runs, args.warmup, workdir)
        snapshot_bytes = os.path.getsize(snapshot_file) if os.path.exists(snapshot_file) else None
        cached = subprocess.run([python, "-c", PYC_CHECK], env=env, capture_output=True, text=True).stdout.split()
        if cached:
            notes.append(f"{len(cached)} kvmready modules have no .pyc (compiled from source on every run): {' '.join(cached)}")

        phases = None
        phases_error = None
        if not args.no_phases:
            progress("in-process phases")
            proc = subprocess.run([python, os.path.abspath(__file__), "--_phases", "--runs", str(args.runs),
                                   "--warmup", str(args.warmup)], env=env, capture_output=True, text=True)
            if proc.returncode == 0:
                phases = json.loads(proc.stdout)
            else:
                phases_error = f"exit {proc.returncode}: {tail(proc.stderr)}"
        progress("")
        loadavg_after = " ".join(f"{x:.2f}" for x in os.getloadavg())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    base_median = statistics.median(baseline.times) if baseline.times else None
    budget_of = {"check_json": "check_json_ratio", "check_table": "check_table_ratio"}
    rows = []
    budgets = []
    for command in commands:
        stats = summarize(command.times)
        row: Dict[str, Any] = {
            "key": command.key, "label": command.label, "argv": command.argv, "wall_ms": stats,
            "peak_rss_mib": max(command.rss_kib) / 1024 if command.rss_kib else None,
            "exit_codes": {str(k): v for k, v in sorted(command.codes.items())},
            "failures": command.failures, "first_failure": command.first_failure,
            "unavailable": command.unavailable, **command.info,
        }
        if stats and base_median:
            row["ratio"] = stats["median"] / base_median
            row["over_baseline_ms"] = stats["median"] - base_median
        if command.key in budget_of:
            key = budget_of[command.key]
            entry = verdict(key, row.get("ratio"))
            budgets.append(entry)
            row["budget"] = f"<= {BUDGETS[key]['limit']:g}x"
            row["status"] = entry["status"]
        rows.append(row)

    kvm_rss = [max(c.rss_kib) / 1024 for c in commands if c.kvmready and c.rss_kib]
    budgets.append(verdict("peak_rss_mib", max(kvm_rss) if kvm_rss else None))
    floor_mib = rss_floor_kib / 1024
    if kvm_rss and max(kvm_rss) <= floor_mib + 0.5:
        notes.append("the peak RSS is at the spawn floor (this process's own peak): the true value is at most that")
    if phases:
        stats = phases["phases"]
        budgets.append(verdict("facts_checks_ms", stats["facts_checks"]["median"] if stats.get("facts_checks") else None))
        kvm = stats.get("live_kvm")
        budgets.append(verdict("live_kvm_ms", kvm["median"] if kvm else None, phases.get("live_kvm_note") if not kvm else None))
    else:
        budgets.append(verdict("facts_checks_ms", None, None if not args.no_phases else "skipped (--no-phases)"))
        budgets.append(verdict("live_kvm_ms", None, None if not args.no_phases else "skipped (--no-phases)"))
    snapshot_cmd = commands[-1]
    budgets.append(verdict("snapshot_bytes", snapshot_bytes,
                           snapshot_cmd.unavailable or snapshot_cmd.first_failure or "no archive was written"))
    if snapshot_cmd.unavailable:
        notes.append("`kvmready snapshot` is not available in this tree: its row and size budget are n/a")

    failed = [b for b in budgets if b["status"] == "FAIL"]
    result = {
        "schema": "kvmready-bench-startup/1",
        "runs": args.runs, "warmup": args.warmup,
        "launcher": launcher_label, "launcher_argv": launcher,
        "fixture": fixture_label,
        "environment": {
            "when": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %z"),
            "host": platform.node(), "kernel": platform.release(), "cpus": os.cpu_count(),
            "python": python, "python_version": python_version, "kvmready_file": kvmready_file,
            "loadavg_before": loadavg_before, "loadavg_after": loadavg_after,
        },
        "baseline_median_ms": base_median,
        "rss_floor_mib": floor_mib,
        "commands": rows,
        "snapshot_bytes": snapshot_bytes,
        "phases": phases, "phases_error": phases_error,
        "budgets": budgets,
        "exit_code": 1 if failed else 0,
        "notes": notes,
    }
    text = json.dumps(result, indent=2)
    if args.save:
        folder = os.path.join(REPO, "bench", "results")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, time.strftime("startup-%Y%m%d-%H%M%S.json"))
        with open(path, "w") as handle:
            handle.write(text + "\n")
        notes.append(f"results saved to {path}")
    sys.stdout.write(text + "\n" if args.json else render_text(result))
    return result["exit_code"]


if __name__ == "__main__":
    sys.exit(main())
