"""The command line: exit codes, selection, formats, output file, colour, widths, subcommands.

Facts come from small trees under tmp_path, injected through the CLI's
`build_facts` seam (tests.helpers.run_cli), so nothing here looks at the
machine running the tests.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fakes import FakeKvmBackend, FakeLiveSystem
from helpers import check_of, cli_runner, fixture_root, run_cli
from treebuilder import KVM_GID, char_node, kvm_node

from kvmready import __version__
from kvmready.checks import REGISTRY
from kvmready.facts import Facts
from kvmready.host import DirectoryHost
from kvmready.kvmabi import KVM_DEVICE

ANSI = re.compile(r"\x1b\[[0-9;]*m")
SRC = Path(__file__).resolve().parent.parent / "src"

VMX_FLAGS = "vnmi preemption_timer invvpid ept_x_only ept_ad flexpriority tsc_offset vtpr mtf vapic ept vpid unrestricted_guest"
BASE_FLAGS = "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht syscall nx lm constant_tsc nonstop_tsc pni"


def cpuinfo_text(cpus: int = 4, vmx: bool = True) -> str:
    blocks = []
    for n in range(cpus):
        flags = BASE_FLAGS + (" vmx ept vpid" if vmx else "")
        block = (
            f"processor\t: {n}\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel name\t: Test Core i7\n"
            f"flags\t\t: {flags}\n"
        )
        if vmx:
            block += f"vmx flags\t: {VMX_FLAGS}\n"
        blocks.append(block)
    return "\n".join(blocks) + "\n"


def write_tree(root: Path, files: dict) -> Path:
    for path, content in files.items():
        full = root / path.lstrip("/")
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_text(content)
    return root


def desktop_files(cpus: int = 4, vmx: bool = True) -> dict:
    """An Intel desktop that is ready for Workstation, as far as a tree can tell.

    vmx=False is the same machine with VT-x off in firmware: no vmx flag, and
    kvm_intel refused to load, so only kvm is there.
    """
    files = {
        "/proc/cpuinfo": cpuinfo_text(cpus, vmx),
        "/proc/sys/kernel/osrelease": "6.8.0-45-generic\n",
        "/proc/sys/kernel/arch": "x86_64\n",
        "/proc/sys/kernel/hostname": "desk\n",
        "/proc/meminfo": "MemTotal:       16326656 kB\nMemAvailable:   12000000 kB\n",
        "/proc/modules": "kvm_intel 409600 0 - Live 0x0\nkvm 1388544 1 kvm_intel, Live 0x0\n",
        "/sys/module/kvm_intel/parameters/nested": "Y\n",
        "/sys/module/kvm_intel/parameters/ept": "Y\n",
        "/sys/module/kvm_intel/parameters/unrestricted_guest": "Y\n",
        "/sys/module/kvm/parameters/enable_vmware_backdoor": "Y\n",
        "/etc/os-release": 'NAME="Ubuntu"\nID=ubuntu\nVERSION_ID="24.04"\nPRETTY_NAME="Ubuntu 24.04.1 LTS"\n',
        "/sys/class/drm/renderD128/device/uevent": "DRIVER=i915\nPCI_CLASS=30000\n",
        "/sys/class/dmi/id/sys_vendor": "Dell Inc.\n",  # the platform's word that this is no VM
        "/sys/class/dmi/id/product_name": "OptiPlex 7090\n",
    }
    if not vmx:
        files["/proc/modules"] = "kvm 1388544 0 - Live 0x0\n"
        files = {path: text for path, text in files.items() if not path.startswith("/sys/module/kvm_intel/")}
    return files


@pytest.fixture
def tree_factory(tmp_path):
    def make(name: str = "host", **knobs) -> Path:
        overrides = knobs.pop("files", {})
        files = desktop_files(**knobs)
        files.update(overrides)
        return write_tree(tmp_path / name, {p: c for p, c in files.items() if c is not None})

    return make


DEVICE_NODES = {KVM_DEVICE: kvm_node(), "/dev/net/tun": char_node(10, 200, 0o666, 0, 0),
                "/dev/vhost-net": char_node(10, 238, 0o600, 0, 0)}


class _TreeWithKvmDevice(DirectoryHost):
    """The tree, plus the device nodes that a tree written by an unprivileged test cannot hold."""

    def node(self, path: str):
        return DEVICE_NODES[path] if path in DEVICE_NODES else super().node(path)


def facts_of(root: Path, **capabilities: int):
    """The tree's facts with a working fake KVM, as on the machine itself: a tree alone proves no guest runs, so
    its verdict is indeterminate (test_root_option_reads_the_tree_and_marks_it_offline shows that)."""
    live = FakeLiveSystem(FakeKvmBackend(capabilities=capabilities), groups=(1000, KVM_GID))
    return lambda: Facts(_TreeWithKvmDevice(str(root)), live_system=live, vm_dir="/vms")


def check_json(root: Path, *extra: str):
    result = run_cli(["check", "--format", "json", *extra], facts_factory=facts_of(root))
    return result, json.loads(result.stdout)


# No released kernel has VMware's KVM support (vmware.kvm-support fails waiting on upstream), so a prepared
# desktop is "ready" only with that check skipped, as the README tells CI to gate.
PREPARED = ("--skip", "vmware.kvm-support")


# -- exit codes -----------------------------------------------------------------------------------
def test_a_prepared_host_waits_on_upstream_and_exits_1(tree_factory):
    result, data = check_json(tree_factory())
    assert (data["verdict"], data["reasons"], data["waiting_on_upstream"]) == ("not_ready", ["vmware.kvm-support"], ["vmware.kvm-support"])
    assert result.exit_code == 1 == data["exit_code"]


def test_ready_exits_0(tree_factory):
    result, data = check_json(tree_factory(), *PREPARED)
    assert data["verdict"] == "ready", data["reasons"]
    assert result.exit_code == 0 == data["exit_code"]
    assert data["summary"]["fail"] == 0 and data["summary"]["warn"] == 0
    assert data["waiting_on_upstream"] == []


def test_ready_with_warnings_exits_0(tree_factory):
    result, data = check_json(tree_factory(cpus=1), *PREPARED)
    assert data["verdict"] == "ready_with_warnings"
    assert data["reasons"] == ["resources.cpus"]
    assert result.exit_code == 0


def test_warnings_beside_the_upstream_failure_still_wait_on_upstream(tree_factory):
    _, data = check_json(tree_factory(cpus=1))
    assert data["waiting_on_upstream"] == ["vmware.kvm-support"]
    assert data["reasons"] == ["vmware.kvm-support", "resources.cpus"]


def test_not_ready_exits_1(tree_factory):
    result, data = check_json(tree_factory(vmx=False))
    assert data["verdict"] == "not_ready"
    assert data["reasons"][:2] == ["cpu.virtualization", "kvm.module"]
    assert "no vendor module" in check_of(data, "kvm.module")["summary"]
    assert check_of(data, "cpu.virtualization")["status"] == "fail"
    assert data["waiting_on_upstream"] == []  # this host fails on its own account too
    assert result.exit_code == 1


def test_strict_turns_warnings_into_exit_1(tree_factory):
    result, data = check_json(tree_factory(cpus=1), "--strict", *PREPARED)
    assert data["verdict"] == "ready_with_warnings"
    assert data["strict"] is True
    assert result.exit_code == 1 == data["exit_code"]


def test_strict_keeps_a_clean_ready_at_0(tree_factory):
    result, _ = check_json(tree_factory(), "--strict", *PREPARED)
    assert result.exit_code == 0


def test_exit_zero_on_not_ready(tree_factory):
    result, data = check_json(tree_factory(vmx=False), "--exit-zero")
    assert data["verdict"] == "not_ready"
    assert result.exit_code == 0 == data["exit_code"]


def test_garbage_cpuinfo_makes_a_required_check_error_and_exit_3(tree_factory):
    root = tree_factory(files={"/proc/cpuinfo": "this is not\na cpuinfo file\n", "/proc/sys/kernel/arch": "x86_64\n"})
    result, data = check_json(root, *PREPARED)
    assert check_of(data, "cpu.virtualization")["status"] == "error"
    assert "no `key : value` lines" in check_of(data, "cpu.virtualization")["summary"]
    assert data["verdict"] == "indeterminate"
    assert data["reasons"][:2] == ["cpu.virtualization", "cpu.firmware"]
    assert check_of(data, "cpu.arch")["status"] == "pass"  # /proc/sys/kernel/arch still tells
    assert result.exit_code == 3


def test_an_error_beside_the_upstream_failure_is_not_ready_and_not_waiting_only(tree_factory):
    root = tree_factory(files={"/proc/cpuinfo": "this is not\na cpuinfo file\n", "/proc/sys/kernel/arch": "x86_64\n"})
    result, data = check_json(root)
    assert (data["verdict"], result.exit_code) == ("not_ready", 1)
    assert data["waiting_on_upstream"] == []  # an unanswered check is not "ready in every other respect"


def test_unreadable_cpuinfo_exits_3(tree_factory):
    root = tree_factory(files={"/proc/sys/kernel/arch": "x86_64\n"})
    (root / "proc" / "cpuinfo").unlink()
    (root / "proc" / "cpuinfo").mkdir()  # there, but not a file: unreadable even for root
    result, data = check_json(root, *PREPARED)
    assert check_of(data, "cpu.virtualization")["status"] == "error"
    assert "not a regular file" in check_of(data, "cpu.virtualization")["summary"]
    assert result.exit_code == 3


def test_a_required_error_beside_a_failure_is_still_not_ready(tree_factory):
    root = tree_factory(files={"/proc/meminfo": None, "/proc/sys/kernel/osrelease": "4.19.0\n"})
    result = run_cli(["check", "--format", "json"], facts_factory=facts_of(root, KVM_CAP_X86_USER_SPACE_MSR=0))
    data = json.loads(result.stdout)
    assert check_of(data, "resources.memory")["status"] == "error"
    assert check_of(data, "kernel.version")["status"] == "fail"
    assert data["verdict"] == "not_ready" and result.exit_code == 1


# -- exit 2: usage and input errors ------------------------------------------------------------------------
def _one_error_line(result) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert result.stdout == ""
    return lines[0]


def test_bad_flag_exits_2():
    result = run_cli(["check", "--no-such-flag"])
    assert result.exit_code == 2
    assert "--no-such-flag" in result.stderr
    assert result.stdout == ""


def test_bad_target_exits_2():
    result = run_cli(["check", "--target", "hyperv"])
    assert result.exit_code == 2


def test_unknown_only_id_exits_2_with_one_line(tree_factory):
    result = run_cli(["check", "--only", "kvm.nope"], facts_factory=facts_of(tree_factory()))
    assert result.exit_code == 2
    line = _one_error_line(result)
    assert line.startswith("kvmready: error: --only 'kvm.nope' matches no check")


def test_unknown_skip_id_exits_2(tree_factory):
    result = run_cli(["check", "--skip", "nothing.*"], facts_factory=facts_of(tree_factory()))
    assert result.exit_code == 2
    assert "--skip 'nothing.*'" in _one_error_line(result)


def test_root_that_is_not_a_directory_exits_2(tmp_path):
    file = tmp_path / "not-a-dir"
    file.write_text("x")
    for root, why in ((file, "not a directory"), (tmp_path / "missing", "no such directory")):
        result = run_cli(["check", "--root", root])
        assert result.exit_code == 2
        assert _one_error_line(result) == f"kvmready: error: --root {root}: {why}"


@pytest.mark.integration  # builds a Host on the real "/" (reads nothing); the unit-test guard forbids that
def test_root_pointing_at_this_machines_root_exits_2():
    result = run_cli(["check", "--root", "/"])
    assert result.exit_code == 2
    assert "this machine's own root" in _one_error_line(result)


def test_root_and_snapshot_together_exit_2(tmp_path):
    result = run_cli(["check", "--root", tmp_path, "--snapshot", tmp_path / "x.tar.gz"])
    assert result.exit_code == 2
    assert "exclude each other" in _one_error_line(result)


# -- --root through the real build_facts --------------------------------------------------------------------
def test_root_option_reads_the_tree_and_marks_it_offline(tree_factory):
    result = run_cli(["check", "--root", tree_factory(), "--format", "json"])
    data = json.loads(result.stdout)
    assert data["host"]["hostname"] == "desk"
    assert data["host"]["source"] == "root" and data["host"]["live"] is False
    assert check_of(data, "kvm.guest")["status"] == "skip"
    # vmware.kvm-support fails (not ready, exit 1); the rest is not "ready in every other respect" either, as no
    # guest ran: KVM is not decided on a tree.
    assert data["verdict"] == "not_ready" and result.exit_code == 1
    assert data["waiting_on_upstream"] == []
    undecided = ["kvm.device", "kvm.access", "kvm.api", "kvm.create-vm", "kvm.guest"]
    assert [check_of(data, check_id)["status"] for check_id in undecided] == ["skip"] * 5
    offline = run_cli(["check", "--root", tree_factory(), "--skip", "vmware.kvm-support", "--format", "json"])
    assert json.loads(offline.stdout)["verdict"] == "indeterminate" and offline.exit_code == 3
    assert json.loads(offline.stdout)["reasons"] == [*undecided, "kvm.capabilities"]


# -- selection ------------------------------------------------------------------------------------------------
def ids_for(root: Path, *selection: str):
    _, data = check_json(root, *selection)
    return [check["id"] for check in data["checks"]]


def test_only_by_id(tree_factory):
    assert ids_for(tree_factory(), "--only", "kvm.device") == ["kvm.device"]


def test_only_by_category(tree_factory):
    expected = sorted(check_id for check_id in REGISTRY if check_id.startswith("kvm."))
    assert ids_for(tree_factory(), "--only", "kvm") == expected


def test_only_by_glob(tree_factory):
    assert ids_for(tree_factory(), "--only", "devices.*") == ["devices.render-node", "devices.tun", "devices.vhost-net"]


def test_only_repeated_and_comma_separated(tree_factory):
    assert ids_for(tree_factory(), "--only", "cpu.arch,kernel.version", "--only", "kvm.module") == [
        "cpu.arch", "kernel.version", "kvm.module",
    ]


def test_skip_by_id_category_and_glob(tree_factory):
    root = tree_factory()
    remaining = ids_for(root, "--skip", "kvm", "--skip", "cpu.*,host.hypervisor")
    assert remaining
    assert not any(check_id.startswith(("kvm.", "cpu.")) for check_id in remaining)
    assert "host.hypervisor" not in remaining and "host.distribution" in remaining


def test_only_and_skip_combine(tree_factory):
    assert ids_for(tree_factory(), "--only", "cpu", "--skip", "cpu.timekeeping,cpu.firmware") == [
        "cpu.arch", "cpu.hardware-mmu", "cpu.virtualization",
    ]


def test_a_failing_check_left_out_no_longer_decides(tree_factory):
    root = tree_factory(vmx=False)
    result, data = check_json(root, "--only", "kernel,resources")
    assert data["verdict"] == "ready" and result.exit_code == 0


# -- formats and output ---------------------------------------------------------------------------------------
def test_json_stdout_is_pure_json_with_one_final_newline(tree_factory):
    result = run_cli(["check", "--format", "json"], facts_factory=facts_of(tree_factory()))
    assert result.stderr == ""
    assert result.stdout.endswith("}\n") and not result.stdout.endswith("\n\n")
    data = json.loads(result.stdout)
    assert data["schema_version"] == 1 and data["tool"] == {"name": "kvmready", "version": __version__}
    assert [c["id"] for c in data["checks"]] == sorted(REGISTRY)


def test_jsonl_every_line_parses(tree_factory):
    result = run_cli(["check", "--format", "jsonl"], facts_factory=facts_of(tree_factory()))
    assert result.stdout.endswith("\n") and not result.stdout.endswith("\n\n")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["type"] for line in lines] == ["check"] * len(REGISTRY) + ["report"]
    assert lines[-1]["verdict"] == "not_ready" and "checks" not in lines[-1]
    assert lines[-1]["waiting_on_upstream"] == ["vmware.kvm-support"]
    assert all(line["hostname"] == "desk" for line in lines[:-1])


def test_output_file_is_written_and_stdout_stays_empty(tree_factory, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    target = out_dir / "report.json"
    result = run_cli(["check", "--format", "json", "--output", target, *PREPARED], facts_factory=facts_of(tree_factory()))
    assert result.exit_code == 0
    assert result.stdout == ""
    assert json.loads(target.read_text())["verdict"] == "ready"
    assert os.listdir(out_dir) == ["report.json"]  # no temporary file left behind
    assert result.stderr == f"kvmready: ready (exit 0); report written to {target}\n"


def test_output_file_replaces_the_old_file_whole(tree_factory, tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old content that is much longer than nothing " * 1000)
    old_inode = target.stat().st_ino
    run_cli(["check", "--format", "json", "--output", target], facts_factory=facts_of(tree_factory()))
    assert json.loads(target.read_text())["schema_version"] == 1
    assert target.stat().st_ino != old_inode  # renamed into place, not rewritten in place


def test_output_into_a_missing_directory_exits_2(tree_factory, tmp_path):
    result = run_cli(["check", "--output", tmp_path / "missing" / "r.json"], facts_factory=facts_of(tree_factory()))
    assert result.exit_code == 2
    assert _one_error_line(result).startswith("kvmready: error: cannot write")


# -- the table -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("width", [40, 60, 71, 72, 80, 200])
def test_table_fits_the_width_and_names_every_check(tree_factory, width):
    root = tree_factory(cpus=2, vmx=False)  # long summaries and remediation text
    result = run_cli(["check"], facts_factory=facts_of(root), env={"COLUMNS": str(width)})
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    too_long = [line for line in lines if len(line) > width]
    assert too_long == []
    for check_id in REGISTRY:  # each on its own row, whole: "✗ FAIL  cpu.virtualization  ..."
        row = re.compile(rf"^. (pass|warn|FAIL|skip|ERROR)\s+{re.escape(check_id)}(\s|$)")
        assert sum(1 for line in lines if row.match(line)) == 1, check_id
    assert any(line.startswith("NOT READY for workstation (exit 1):") for line in lines)


def test_table_narrow_drops_the_severity_column(tree_factory):
    root = tree_factory()
    narrow = run_cli(["check"], facts_factory=facts_of(root), env={"COLUMNS": "60"}).stdout
    wide = run_cli(["check"], facts_factory=facts_of(root), env={"COLUMNS": "120"}).stdout
    assert " req " in wide and " req " not in narrow


def test_table_verdict_line_for_ready(tree_factory):
    result = run_cli(["check", *PREPARED], facts_factory=facts_of(tree_factory()))
    assert "READY for workstation (exit 0):" in result.stdout
    assert "every other respect" not in result.stdout
    assert result.stdout.startswith(f"kvmready {__version__} · target workstation · desk (live)")


# -- colour ---------------------------------------------------------------------------------------------
def test_color_never_has_no_escapes(tree_factory):
    result = run_cli(["check", "--color", "never"], facts_factory=facts_of(tree_factory(vmx=False)), env={"NO_COLOR": None})
    assert not ANSI.search(result.stdout)


def test_color_always_has_escapes(tree_factory):
    result = run_cli(["check", "--color", "always"], facts_factory=facts_of(tree_factory(vmx=False)), env={"NO_COLOR": None})
    assert ANSI.search(result.stdout)
    assert "FAIL" in ANSI.sub("", result.stdout)


def test_no_color_env_gives_no_escapes(tree_factory):
    result = run_cli(["check"], facts_factory=facts_of(tree_factory(vmx=False)), env={"NO_COLOR": "1"})
    assert not ANSI.search(result.stdout)


class _Terminal:
    def isatty(self) -> bool:
        return True


def test_auto_colour_follows_no_color_and_term(monkeypatch):
    from kvmready.cli_common import Color, use_color

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    assert use_color(Color.AUTO, _Terminal()) is True
    monkeypatch.setenv("NO_COLOR", "1")
    assert use_color(Color.AUTO, _Terminal()) is False
    assert use_color(Color.ALWAYS, _Terminal()) is True
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("TERM", "dumb")
    assert use_color(Color.AUTO, _Terminal()) is False
    assert use_color(Color.NEVER, _Terminal()) is False


class _Pipe:
    def isatty(self) -> bool:
        return False


def test_colour_rules_of_no_color_and_force_color(monkeypatch):
    """no-color.org: only a non-empty NO_COLOR turns colour off; force-color.org: a non-empty FORCE_COLOR forces it.

    FORCE_COLOR wins over NO_COLOR (it is the narrower wish, as in Node.js);
    --color always/never win over both (a command-line flag overrides the environment).
    """
    from kvmready.cli_common import Color, use_color

    monkeypatch.setenv("TERM", "xterm-256color")
    for name in ("NO_COLOR", "FORCE_COLOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_COLOR", "")
    assert use_color(Color.AUTO, _Terminal()) is True  # empty: as if unset
    monkeypatch.setenv("NO_COLOR", "0")
    assert use_color(Color.AUTO, _Terminal()) is False  # any non-empty value, even 0
    monkeypatch.delenv("NO_COLOR")
    assert use_color(Color.AUTO, _Pipe()) is False
    monkeypatch.setenv("FORCE_COLOR", "")
    assert use_color(Color.AUTO, _Pipe()) is False  # empty: as if unset
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert use_color(Color.AUTO, _Pipe()) is True
    assert use_color(Color.AUTO, None) is True
    monkeypatch.setenv("NO_COLOR", "1")
    assert use_color(Color.AUTO, _Pipe()) is True
    assert use_color(Color.NEVER, _Terminal()) is False
    monkeypatch.delenv("FORCE_COLOR")
    assert use_color(Color.ALWAYS, _Pipe()) is True


def test_force_color_colours_a_pipe(tree_factory):
    facts = facts_of(tree_factory(vmx=False))
    assert ANSI.search(run_cli(["check"], facts_factory=facts, env={"NO_COLOR": None, "FORCE_COLOR": "1"}).stdout)
    assert not ANSI.search(run_cli(["check"], facts_factory=facts, env={"NO_COLOR": None, "FORCE_COLOR": ""}).stdout)
    assert not ANSI.search(run_cli(["check", "--color", "never"], facts_factory=facts, env={"FORCE_COLOR": "1"}).stdout)
    assert not ANSI.search(run_cli(["check", "--format", "json"], facts_factory=facts, env={"FORCE_COLOR": "1"}).stdout)


# -- help, exit codes, completion -------------------------------------------------------------------------
def _flat(text: str) -> str:
    """Help text without rich's box drawing and line breaks."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


@pytest.mark.parametrize("args", [["--help"], ["check", "--help"]])
def test_help_lists_the_exit_codes(args):
    result = run_cli(args)
    assert result.exit_code == 0
    text = _flat(result.stdout)
    for code in ("0 ready", "1 not ready", "2 usage or input error", "3 indeterminate", "130 interrupted"):
        assert code in text, code


def test_completion_options_are_offered():
    text = _flat(run_cli(["--help"]).stdout)
    assert "--install-completion" in text and "--show-completion" in text


def test_show_completion_prints_a_script():
    from kvmready import cli

    result = cli_runner().invoke(cli.app, ["--show-completion", "bash"], prog_name="kvmready", env={"NO_COLOR": "1"})
    assert result.exit_code == 0
    assert "_KVMREADY_COMPLETE" in result.stdout and "complete " in result.stdout


@pytest.mark.parametrize("words, cword, expected", [
    ("kvmready ch", 1, {"check"}),
    ("kvmready check --format ", 3, {"table", "json", "jsonl", "junit", "prometheus", "nfd"}),
    ("kvmready check --tar", 2, {"--target"}),
])
def test_completion_completes(words, cword, expected):
    from kvmready import cli

    env = {"_KVMREADY_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(cword), "NO_COLOR": "1"}
    result = cli_runner().invoke(cli.app, [], prog_name="kvmready", env=env)
    assert result.exit_code == 0
    assert expected <= set(result.stdout.split()), result.stdout


def test_json_never_carries_colour(tree_factory):
    result = run_cli(["check", "--format", "json", "--color", "always"], facts_factory=facts_of(tree_factory(vmx=False)))
    assert not ANSI.search(result.stdout)
    json.loads(result.stdout)


# -- list, explain, schema, version ------------------------------------------------------------------------
def test_list_table_names_every_check_with_severities():
    result = run_cli(["list"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "WORKSTATION", "KVM", "TITLE"]
    rows = {line.split()[0]: line.split()[1:3] for line in lines[1:]}
    assert set(rows) == set(REGISTRY)
    assert rows["cpu.arch"] == ["required", "required"]
    assert rows["host.hypervisor"] == ["required", "recommended"]
    assert "(live)" in next(line for line in lines if line.startswith("kvm.guest"))


def test_list_json():
    result = run_cli(["list", "--format", "json"])
    entries = json.loads(result.stdout)
    assert [entry["id"] for entry in entries] == sorted(REGISTRY)
    guest = next(entry for entry in entries if entry["id"] == "kvm.guest")
    assert guest["live"] is True and guest["severity"] == {"workstation": "required", "kvm": "required"}


def test_list_refuses_jsonl():
    result = run_cli(["list", "--format", "jsonl"])
    assert result.exit_code == 2
    assert "table or json" in _one_error_line(result)


def test_explain_a_check():
    result = run_cli(["explain", "cpu.virtualization"])
    assert result.exit_code == 0
    text = result.stdout
    assert text.startswith("cpu.virtualization: Hardware virtualization (VT-x/AMD-V)\n")
    for heading in ("What it checks:", "Why it matters:", "How to fix:"):
        assert heading in text
    assert "required for --target workstation, required for --target kvm" in text


@pytest.mark.parametrize("check_id, source", [
    ("vmware.kvm-support", "lore.kernel.org/kvm/20250422161304.579394-1-zack.rusin@broadcom.com"),
    ("conflicts.virtualbox", "issues 711 and 713"),
    ("resources.memory", "2 GB of memory minimum, 4 GB or more recommended"),
])
def test_explain_shows_the_sources_of_a_checks_figures(check_id, source):
    result = run_cli(["explain", check_id], env={"COLUMNS": "400"})
    assert result.exit_code == 0
    sources = result.stdout.split("Sources:\n", 1)[1]
    assert source in " ".join(sources.split())


def test_explain_an_unknown_id_exits_2_with_one_line():
    result = run_cli(["explain", "cpu.nope"])
    assert result.exit_code == 2
    assert _one_error_line(result) == "kvmready: error: no check 'cpu.nope'; `kvmready list` shows the ids"


def test_schema_is_a_valid_json_schema():
    from jsonschema import Draft202012Validator

    result = run_cli(["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_a_cli_report_validates_against_the_schema(tree_factory):
    from jsonschema import Draft202012Validator

    schema = json.loads(run_cli(["schema"]).stdout)
    _, data = check_json(tree_factory(vmx=False))
    Draft202012Validator(schema).validate(data)


def test_version():
    result = run_cli(["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"kvmready {__version__}\n"


def test_python_dash_m_version():
    env = dict(os.environ, PYTHONPATH=str(SRC))
    completed = subprocess.run(
        [sys.executable, "-m", "kvmready", "--version"], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == f"kvmready {__version__}\n"
    assert completed.stderr == ""


@pytest.mark.parametrize("args", [[], ["fleet"]], ids=["kvmready", "kvmready-fleet"])
def test_no_command_shows_help_and_exits_2(args):
    """No command is a usage error: the help on stdout and exit 2 on every click (8.1 alone exited 0)."""
    result = run_cli(args)
    assert result.exit_code == 2
    assert "Usage:" in result.stdout and ("summarize" if args else "check") in result.stdout
    assert result.stderr == ""


def test_fleet_help_asked_for_exits_0():
    result = run_cli(["fleet", "--help"])
    assert result.exit_code == 0 and "summarize" in result.stdout and result.stderr == ""


def _check_with_runner_patched(patch: str) -> subprocess.CompletedProcess:
    """`kvmready check --root <the PVM fixture>` through the real entry point, after `patch` (Python source that
    replaces `runner.run`; `os`, `signal` and `runner` are imported for it)."""
    src = Path(__file__).resolve().parent.parent / "src"
    program = (
        "import os, signal, kvmready.runner as runner\n"
        + patch
        + "import sys; sys.argv = ['kvmready', 'check', '--root', sys.argv[1]]\n"
        "from kvmready._entry import main; main()\n"
    )
    return subprocess.run(
        [sys.executable, "-c", program, str(fixture_root("firecracker-pvm-host"))],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(src)},
    )


def test_ctrl_c_inside_a_destructor_still_stops_the_run():
    """A signal can land while Python runs a __del__ or a weakref callback (the import machinery has both), where
    the handler's exception cannot propagate. Reverted, Python printed "Exception ignored ... Stopped" with a
    traceback and the run went on (CI saw it once under load, in the Ctrl-C-at-any-moment test)."""
    result = _check_with_runner_patched(
        "class Dying:\n"
        "    def __del__(self):\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "        for _ in range(1000): pass  # the handler runs here, inside __del__\n"
        "real = runner.run\n"
        "def run(*args, **kwargs):\n"
        "    Dying()  # freed at once\n"
        "    import time; deadline = time.monotonic() + 5\n"
        "    while time.monotonic() < deadline: pass  # ordinary code, where the stop raised again lands\n"
        "    return real(*args, **kwargs)\n"
        "runner.run = run\n"
    )
    assert (result.returncode, result.stderr, result.stdout) == (130, "kvmready: interrupted\n", "")


def test_ctrl_c_exits_130_with_one_line_and_no_traceback():
    """SIGINT in the middle of a run (here: while the checks run) ends it with exit 130."""
    result = _check_with_runner_patched(
        "def interrupted(*args, **kwargs):\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "runner.run = interrupted\n"
    )
    assert (result.returncode, result.stderr, result.stdout) == (130, "kvmready: interrupted\n", "")
