"""Property tests of every parser: random text and bytes never make one raise; generated inputs round-trip.

Inputs include binary garbage, NULs, invalid UTF-8 (as the host decodes it:
with replacement characters), huge lines and structured near-misses built
from each format's own keys.  Hypothesis keeps no example database (nothing
is written to the working tree) and each property runs about 200 examples.

Random text includes characters for which `str.isdigit()` is true but
`int()` fails (superscripts such as "²"); the tests at the end pin them.
"""

from __future__ import annotations

import shlex
import sys
from typing import Dict, List, Optional

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from kvmready.facts import Facts, accounts, cpuinfo, devices, firmware, hypervisor, kernel, memory, modules, osinfo
from kvmready.host import MemoryHost, Node
from kvmready.kvmabi import KVM_DEVICE
from kvmready.model import Status, Target
from kvmready.render import OutputFormat
from kvmready.runner import build_report, run

PROPERTY = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# isdigit() but not int()-able: superscripts, circled digits ... (see the tests at the end).
NON_DECIMAL_DIGITS = "".join(chr(c) for c in range(sys.maxunicode + 1) if chr(c).isdigit() and not chr(c).isdecimal())
def _decode(data: bytes) -> str:
    """What Host.read_text hands a parser."""
    return data.decode("utf-8", errors="replace")


# -- strategies -------------------------------------------------------------------------

garbage_bytes = st.one_of(
    st.binary(max_size=2048),
    st.binary(min_size=1, max_size=32).map(lambda chunk: chunk * 4096),  # a huge line (or none at all)
    st.lists(st.sampled_from([b"\0", b"\xff", b"\xfe", b"\xc3\x28", b"\n", b":", b"=", b" ", b"\t", b"\"", b"'", b"[", b"]"]), max_size=200).map(b"".join),
)
garbage_text = st.one_of(st.text(max_size=2048), garbage_bytes.map(_decode))
value_text = st.one_of(
    st.text(max_size=80),
    st.from_regex(r"[0-9]{1,25}", fullmatch=True),
    st.sampled_from(["", " ", "-", "0", "1", "Y", "N", "yes", "vmx svm lm fpu hypervisor", "GenuineIntel", "AuthenticAMD",
                     "IBM/S390", "0x41", "8", "AArch64", "rv64imafdc", "POWER9", "kB", "\x00", "\ufffd"]),
    st.binary(max_size=40).map(_decode),
)


def keyed_lines(keys: List[str], separator: str) -> st.SearchStrategy:
    """`key<sep>value` lines from the format's own vocabulary, mixed with blank and garbage lines."""
    line = st.one_of(
        st.tuples(st.sampled_from(keys), value_text).map(lambda kv: f"{kv[0]}{separator}{kv[1]}"),
        st.tuples(st.sampled_from(keys), st.sampled_from(["\t", " ", ""]), value_text).map(lambda kv: f"{kv[0]}{kv[1]}{separator} {kv[2]}"),
        st.just(""),
        garbage_text.map(lambda t: t[:100]),
    )
    return st.lists(line, max_size=60).map("\n".join)


CPUINFO_KEYS = ["processor", "vendor_id", "flags", "features", "Features", "vmx flags", "model name", "cpu model", "cpu",
                "uarch", "hardware", "Hardware", "CPU implementer", "CPU architecture", "isa", "mvendorid", "platform",
                "# processors", "bogomips per cpu", "cpu family", "model"]
cpuinfo_text = st.one_of(garbage_text, keyed_lines(CPUINFO_KEYS, ":"))
meminfo_text = st.one_of(garbage_text, keyed_lines(["MemTotal", "MemAvailable", "MemFree", "SwapTotal"], ":"))
os_release_text = st.one_of(garbage_text, keyed_lines(["ID", "VERSION_ID", "NAME", "PRETTY_NAME", "ID_LIKE", "VERSION", "#ID", "bad key"], "="))
group_text = st.one_of(garbage_text, st.lists(st.lists(value_text, min_size=1, max_size=6).map(":".join), max_size=30).map("\n".join))
module_name = st.from_regex(r"[a-z][a-z0-9_-]{0,15}", fullmatch=True)
module_names = st.lists(st.one_of(module_name, st.sampled_from(["kvm", "kvm_intel", "kvm-amd", "kvm_pvm", "vboxdrv", "vmmon"])), max_size=12, unique=True)


def _host(files: Dict[str, bytes], errors: Optional[Dict[str, str]] = None, nodes: Optional[Dict[str, Node]] = None) -> MemoryHost:
    return MemoryHost(files, nodes=nodes, errors=errors)


# -- never raises -------------------------------------------------------------------------


@PROPERTY
@given(cpuinfo_text)
@example("")
@example("\0" * 1000)
@example("processor : 0\nprocessor : 1\n\n\n: lonely\nflags :\n")
def test_cpuinfo_parse_never_raises(text: str) -> None:
    info = cpuinfo.parse(text)
    assert isinstance(info, cpuinfo.CpuInfo)
    assert info.vmx_cpus <= info.flag_lines and info.svm_cpus <= info.flag_lines
    assert info.virtualization in (None, "vt-x", "amd-v", "sie")
    info.evidence()


@PROPERTY
@given(garbage_bytes)
def test_cpuinfo_collect_never_raises(data: bytes) -> None:
    """Reading adds nothing to parsing: collect() is parse() of the decoded file, and a file is always readable."""
    text = _decode(data)
    info = cpuinfo.collect(_host({"/proc/cpuinfo": text.encode()}))
    assert info == cpuinfo.parse(text)
    assert info.error is None or info.error.startswith("no `key : value` lines")


@PROPERTY
@given(garbage_text)
@example("6.8.0-45-generic")
@example("   ")
@example("99999999999999999999999.1")
def test_parse_release_never_raises(text: str) -> None:
    version = kernel.parse_release(text)
    assert version is None or (len(version) == 3 and all(isinstance(part, int) and part >= 0 for part in version))


@PROPERTY
@given(garbage_bytes, garbage_bytes, garbage_bytes, st.booleans(), garbage_text, st.sampled_from([None, "x86", "arm", "s390", "powerpc"]))
def test_kernel_collect_and_arch_never_raise(osrelease: bytes, version: bytes, cmdline: bytes, with_arch: bool, arch: str, hint) -> None:
    files = {"/proc/sys/kernel/osrelease": osrelease, "/proc/version": version, "/proc/cmdline": cmdline}
    if with_arch:
        files["/proc/sys/kernel/arch"] = arch.encode("utf-8", "replace")
    host = _host(files)
    info = kernel.collect(host)
    assert isinstance(info.cmdline_params, dict)
    release_text = _decode(osrelease).strip()
    if release_text and len(osrelease) <= 4096:  # the release file wins whenever it says anything
        assert (info.release, info.source) == (release_text, kernel.OSRELEASE)
    assert (info.release is None) == (info.error is not None)
    assert info.version == (kernel.parse_release(info.release) if info.release else None)
    info.evidence()
    layout = cpuinfo.CpuArch(hint) if hint else None
    arch_info = kernel.detect_arch(host, layout, info.release, module_bits=lambda: None, highmem=lambda: False)
    assert arch_info.name is None or isinstance(arch_info.name, str)
    assert arch_info.label is None or isinstance(arch_info.label, str)
    arch_info.evidence()


sysfs_value = st.one_of(garbage_bytes, st.sampled_from([b"Y\n", b"N\n", b"1\n", b"0\n", b"live\n", b"coming\n", b"\xff\n", b""]))


@PROPERTY
@given(
    garbage_bytes,
    st.dictionaries(module_name, st.dictionaries(st.from_regex(r"[a-z_]{1,12}", fullmatch=True), sysfs_value, max_size=4), max_size=8),
    st.booleans(),
    st.dictionaries(module_name, sysfs_value, max_size=6),
)
def test_modules_collect_and_params_never_raise(proc_modules: bytes, params: dict, with_proc: bool, initstates: dict) -> None:
    files: Dict[str, bytes] = {}
    if with_proc:
        files["/proc/modules"] = proc_modules
    for module, values in params.items():
        for name, value in values.items():
            files[f"/sys/module/{module}/parameters/{name}"] = value
    for module, value in initstates.items():
        files[f"/sys/module/{module}/initstate"] = value
    host = _host(files)
    table = modules.collect(host)
    assert table.known or not files
    # Whatever /proc/modules says, every /sys/module entry is in the table (loaded or built in).
    listed = [name for name, values in params.items() if values] + list(initstates)
    assert {modules.module_name(name) for name in listed} <= set(table.modules)
    for module in list(params) + ["kvm", "kvm_intel", "absent"]:
        read = modules.read_params(host, module)
        if modules.module_name(module) == module:  # sysfs spells modules with underscores; read_params asks so
            # every parameter file read (or its error kept), none invented
            assert set(read.values) | set(read.errors) == set(params.get(module, {}))
        for name in read.values:
            assert read.flag(name) in (None, True, False)
    table.sources()


@PROPERTY
@given(st.one_of(st.none(), garbage_text, st.sampled_from(["Y", "N", " y ", "1", "0", "on", "off", "TRUE", "no", "2", ""])))
def test_parse_bool_never_raises(value) -> None:
    assert modules.parse_bool(value) in (None, True, False)


@PROPERTY
@given(meminfo_text)
@example("MemTotal: 99999999999999999999999999 kB")
def test_memory_parse_never_raises(text: str) -> None:
    info = memory.parse(text)
    assert info.total_bytes is None or info.total_bytes >= 0
    assert (info.total_bytes is None) == bool(info.error)


@PROPERTY
@given(os_release_text)
@example('ID="unbalanced\nNAME=\'x')
@example("ID=\\")
def test_osinfo_parse_never_raises(text: str) -> None:
    values = osinfo.parse_assignments(text)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in values.items())
    info = osinfo.parse(text, source="/etc/os-release")
    assert (info.error is None) == bool(values)  # an error only when no KEY=value line parsed
    if values:
        assert info.id and info.id == info.id.lower()  # always an id: ID, else os-release(5)'s default "linux"
        assert info.version_id == (values.get("VERSION_ID") or None)
        assert all(part == part.lower() for part in info.id_like)
    info.to_dict()
    info.evidence()


@PROPERTY
@given(group_text)
def test_accounts_parse_never_raises(text: str) -> None:
    table = accounts.parse(text)
    for group in table.by_name.values():
        assert isinstance(group.gid, int) and table.name_of(group.gid)
    table.by_gid(0)


HYPERVISOR_FILES = [f"{hypervisor.DMI_DIR}/{name}" for name in hypervisor.DMI_FIELDS] + [
    hypervisor.SYS_HYPERVISOR_TYPE, hypervisor.PROC_XEN_CAPABILITIES, hypervisor.PROC_SYSINFO, hypervisor.DT_HYPERVISOR,
    hypervisor.DT_COMPATIBLE, hypervisor.CLOCKSOURCE, hypervisor.AVAILABLE_CLOCKSOURCES, hypervisor.PCI_DEVICES,
    hypervisor.PPC_LPARCFG,
]
hypervisor_value = st.one_of(
    garbage_bytes,
    st.sampled_from([b"QEMU\n", b"VMware, Inc.\n", b"xen\n", b"control_d\n", b"kvm-clock\n", b"Amazon EC2\n", b"m5.metal\n",
                     b"Microsoft Corporation\n", b"Virtual Machine\n", b"linux,dummy-virt\0", b"qemu,pseries\0",
                     b"VM00 Control Program: z/VM 7.1.0\n", b"LPAR\n", b"0000\t80eecafe\t0\n", b""]),
)


@PROPERTY
@given(
    st.dictionaries(st.sampled_from(HYPERVISOR_FILES), hypervisor_value, max_size=len(HYPERVISOR_FILES)),
    st.dictionaries(st.sampled_from(HYPERVISOR_FILES), st.sampled_from(["Permission denied (EACCES)", "Input/output error (EIO)"]), max_size=3),
    st.booleans(),
    st.one_of(st.none(), garbage_text.map(lambda t: t[:16]), st.sampled_from(sorted(hypervisor.CPUID_SIGNATURES))),
)
def test_hypervisor_collect_never_raises(files: dict, errors: dict, flag: bool, signature) -> None:
    info = hypervisor.collect(_host(files, errors), flag, signature)
    assert info.name is None or isinstance(info.name, str)
    assert info.xen_role in (None, "dom0", "domU")
    # Only sources that really failed are called unreadable, each with its reason (or too large to read).
    for entry in info.unreadable:
        path, _, reason = entry.partition(": ")
        too_large = reason.startswith("larger than") and len(files.get(path, b"")) > 64 * 1024
        assert reason == errors.get(path) or too_large, entry
    info.evidence()


@PROPERTY
@given(
    st.one_of(st.none(), garbage_bytes, st.binary(max_size=8)),
    st.one_of(st.none(), garbage_bytes, st.binary(max_size=8)),
    st.one_of(st.none(), garbage_bytes.map(_decode).map(str.encode), st.sampled_from([b"[none] integrity confidentiality\n", b"none [integrity]\n", b"]["])),
    st.booleans(),
    st.booleans(),
)
def test_firmware_collect_never_raises(secure_boot, setup_mode, lockdown, efi: bool, security_other: bool) -> None:
    files: Dict[str, bytes] = {"/sys/firmware/acpi/tables/DSDT": b"x"}
    if efi:
        files["/sys/firmware/efi/runtime"] = b""
        if secure_boot is not None:
            files[firmware.SECURE_BOOT_VAR] = secure_boot
        if setup_mode is not None:
            files[firmware.SETUP_MODE_VAR] = setup_mode
    if lockdown is not None:
        files[firmware.LOCKDOWN] = lockdown
    if security_other:
        files["/sys/kernel/security/apparmor/profiles"] = b""
    info = firmware.collect(_host(files))
    assert info.secure_boot in (None, True, False)
    assert info.uefi is efi  # /sys/firmware is there, so the efi directory decides
    if efi and secure_boot is not None:  # attributes (4 bytes), then the value byte; read up to 64 bytes
        assert info.secure_boot == (secure_boot[4] == 1 if 5 <= len(secure_boot) <= 64 else None)
    if lockdown is None:  # no lockdown file: none where securityfs is mounted with other files, else unknown
        assert info.lockdown == ("none" if security_other else None)
    elif info.lockdown is not None:
        assert f"[{info.lockdown}]" in _decode(lockdown)  # the bracketed mode, as the kernel marks it
    else:
        assert info.lockdown_error
    info.secure_boot_evidence()
    info.lockdown_evidence()


node_kind = st.sampled_from(["char", "block", "file", "dir", "fifo", "socket", "other"])


@PROPERTY
@given(
    st.dictionaries(st.sampled_from([KVM_DEVICE, devices.TUN, devices.VHOST_NET, "/dev/dri/renderD128", "/dev/null"]),
                    st.tuples(node_kind, st.integers(0, 0o7777), st.integers(-1, 2**32), st.integers(0, 4095), st.integers(0, 2**20)), max_size=5),
    st.dictionaries(st.from_regex(r"renderD[0-9]{1,3}|card[0-9]", fullmatch=True), garbage_bytes, max_size=3),
)
def test_devices_collect_never_raises(nodes: dict, uevents: dict) -> None:
    made = {path: Node(kind, mode, uid, 0, major, minor) for path, (kind, mode, uid, major, minor) in nodes.items()}
    files = {f"/sys/class/drm/{name}/device/uevent": data for name, data in uevents.items()}
    facts = devices.collect(_host(files, nodes=made))
    assert facts.dev_present == bool(made)
    for path, node in facts.nodes.items():
        assert node.node == made.get(path)  # stat answers exactly what the host holds
        assert node.evidence()["present"] == (path in made)
        assert node.is_expected_char_device in (True, False)


# -- every check over a random host ---------------------------------------------------------

KNOWN_PATHS = [
    "/proc/cpuinfo", "/proc/meminfo", "/proc/modules", "/proc/sys/kernel/osrelease", "/proc/version", "/proc/cmdline",
    "/proc/sys/kernel/arch", "/proc/sys/kernel/hostname", "/etc/os-release", "/usr/lib/os-release", "/etc/group",
    "/sys/module/kvm/parameters/enable_vmware_backdoor", "/sys/module/kvm/parameters/enable_virt_at_load",
    "/sys/module/kvm_intel/parameters/nested", "/sys/module/kvm_intel/parameters/ept", "/sys/module/kvm_amd/parameters/npt",
    "/sys/module/kvm_amd/parameters/nested", "/sys/module/vboxdrv/initstate", "/sys/module/kvm_pvm/initstate",
    firmware.SECURE_BOOT_VAR, firmware.LOCKDOWN, "/sys/class/drm/renderD128/device/uevent",
] + HYPERVISOR_FILES
REAL_LOOKING = {
    "/proc/cpuinfo": b"processor : 0\nvendor_id : GenuineIntel\nflags : fpu lm vmx hypervisor\n\n",
    "/proc/meminfo": b"MemTotal: 16000000 kB\n",
    "/proc/modules": b"kvm_intel 1 0 - Live 0x0\nkvm 1 1 kvm_intel, Live 0x0\n",
    "/proc/sys/kernel/osrelease": b"6.8.0-45-generic\n",
    "/etc/os-release": b"ID=ubuntu\nVERSION_ID=24.04\n",
}


@settings(max_examples=120, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    st.dictionaries(st.sampled_from(KNOWN_PATHS), st.one_of(garbage_bytes, hypervisor_value, sysfs_value), max_size=len(KNOWN_PATHS)),
    st.dictionaries(st.sampled_from(KNOWN_PATHS), st.sampled_from(["Permission denied (EACCES)", "Is a directory (EISDIR)"]), max_size=4),
    st.booleans(),
)
def test_every_check_survives_a_random_host(files: dict, errors: dict, real_looking: bool) -> None:
    """No check crashes (a crash would surface as `error: the probe failed: ...`), every report renders."""
    if real_looking:
        files = {**REAL_LOOKING, **files}
    files = {path: _decode(data).encode("utf-8", "surrogatepass") if path != firmware.SECURE_BOOT_VAR else data for path, data in files.items()}
    facts = Facts(_host(files, errors))
    for target in Target:
        results = run(facts, target)
        crashed = {r.id: r.summary for r in results if "exception" in r.evidence}
        assert crashed == {}
        for result in results:
            assert isinstance(result.status, Status)
            assert result.status is not Status.ERROR or result.summary
        report = build_report(facts, target, results)
        assert report.exit_code in (0, 1, 3)
        for output_format in OutputFormat:
            output_format.renderer(width=100).render(report).encode("utf-8")


# -- round trips ---------------------------------------------------------------------------

flag_name = st.from_regex(r"[a-z][a-z0-9_]{0,14}", fullmatch=True)


@PROPERTY
@given(st.lists(st.tuples(st.frozensets(flag_name, max_size=30), st.booleans(), st.booleans()), min_size=1, max_size=16), st.sampled_from(["GenuineIntel", "AuthenticAMD"]))
def test_cpuinfo_flags_round_trip(cpus, vendor: str) -> None:
    """Flag sets rendered as multi-CPU cpuinfo parse back to their union and the vmx/svm counts."""
    blocks, flag_sets = [], []
    for index, (flags, vmx, svm) in enumerate(cpus):
        flags = set(flags) - {"vmx", "svm"}
        flags |= {"vmx"} if vmx else set()
        flags |= {"svm"} if svm else set()
        flag_sets.append(frozenset(flags))
        blocks.append(
            f"processor\t: {index}\nvendor_id\t: {vendor}\nmodel name\t: Test CPU\nflags\t\t: {' '.join(sorted(flags))}\nbogomips\t: 4000.00\n"
        )
    info = cpuinfo.parse("\n".join(blocks) + "\n")
    assert info.flags == frozenset().union(*flag_sets)
    assert info.logical_cpus == len(cpus)
    assert info.flag_lines == len(cpus)
    assert info.vmx_cpus == sum(1 for flags in flag_sets if "vmx" in flags)
    assert info.svm_cpus == sum(1 for flags in flag_sets if "svm" in flags)
    assert info.vendor == vendor and info.model == "Test CPU"


@PROPERTY
@given(st.lists(st.frozensets(flag_name, max_size=20), min_size=1, max_size=8))
def test_cpuinfo_blocks_without_blank_lines_still_split(flag_sets) -> None:
    """A `processor` line starts a new block even without the blank line between blocks."""
    text = "".join(f"processor : {index}\nflags : {' '.join(sorted(flags))}\n" for index, flags in enumerate(flag_sets))
    info = cpuinfo.parse(text)
    assert info.logical_cpus == len(flag_sets)
    assert info.flags == frozenset().union(*flag_sets)


release_suffix = st.text(max_size=40)


@PROPERTY
@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6), release_suffix)
@example(6, 8, 0, "45-generic")
@example(6, 18, 44, "fc-v657")
def test_parse_release_round_trips(a: int, b: int, c: int, suffix: str) -> None:
    assert kernel.parse_release(f"{a}.{b}.{c}-{suffix}") == (a, b, c)
    assert kernel.parse_release(f"{a}.{b}.{c}+{suffix}") == (a, b, c)
    assert kernel.parse_release(f"{a}.{b}") == (a, b, 0)
    assert kernel.parse_release(f"  {a}.{b}.{c}\n") == (a, b, c)


@PROPERTY
@given(st.integers(0, 2**62))
def test_meminfo_total_round_trips(kib: int) -> None:
    info = memory.parse(f"MemFree: 1 kB\nMemTotal:   {kib} kB\nMemAvailable: {kib // 2} kB\n")
    assert info.total_bytes == kib * 1024 and info.available_bytes == (kib // 2) * 1024


@PROPERTY
@given(st.dictionaries(st.from_regex(r"[a-z_][a-z0-9_-]{0,15}", fullmatch=True), st.tuples(st.integers(0, 2**31), st.lists(st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True), max_size=4)), max_size=20))
def test_etc_group_round_trips(groups: dict) -> None:
    text = "".join(f"{name}:x:{gid}:{','.join(members)}\n" for name, (gid, members) in groups.items())
    table = accounts.parse("# comment\n+::::\n" + text)
    assert {name: (g.gid, list(g.members)) for name, g in table.by_name.items()} == {name: (gid, members) for name, (gid, members) in groups.items()}


@PROPERTY
@given(module_names)
def test_proc_modules_round_trip(names: List[str]) -> None:
    text = "".join(f"{name} 16384 0 - Live 0x0000000000000000\n" for name in names)
    table = modules.collect(_host({"/proc/modules": text.encode()}))
    assert set(table.modules) == {modules.module_name(name) for name in names}
    assert all(module.state == "live" and module.source == modules.PROC_MODULES for module in table.modules.values())


# os-release(5): KEY=value, values optionally in single or double quotes; no line breaks inside.
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
os_key = st.from_regex(r"[A-Z][A-Z0-9_]{0,20}", fullmatch=True)
os_value = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters=LINE_BREAKS + "\0"), max_size=60)


def _double_quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@PROPERTY
@given(st.dictionaries(os_key, os_value, max_size=12), st.sampled_from(["double", "single", "shlex"]))
@example({"PRETTY_NAME": 'Debian GNU/Linux 12 (bookworm)', "HOME_URL": "https://www.debian.org/"}, "double")
@example({"NAME": 'say "hi" \\ $HOME `x` #not-a-comment'}, "double")
def test_os_release_quoting_round_trips(values: Dict[str, str], style: str) -> None:
    lines = ["# a comment", ""]
    expected = {}
    for key, value in values.items():
        if style == "single":
            value = value.replace("'", "")
            lines.append(f"{key}='{value}'")
        elif style == "shlex":
            lines.append(f"{key}={shlex.quote(value)}")
        else:
            lines.append(f"{key}={_double_quoted(value)}")
        expected[key] = value
    parsed = osinfo.parse_assignments("\n".join(lines) + "\n")
    assert parsed.keys() == expected.keys()
    for key, value in expected.items():
        assert parsed[key] == value, (key, value, parsed[key])


@PROPERTY
@given(st.from_regex(r"[a-z][a-z0-9._-]{0,15}", fullmatch=True), st.one_of(st.none(), st.from_regex(r"[0-9]{1,2}(\.[0-9]{1,2})?", fullmatch=True)), st.sampled_from(['"', "'", ""]))
def test_os_release_identity_round_trips(os_id: str, version: Optional[str], quote: str) -> None:
    text = f"NAME=Test\nID={quote}{os_id}{quote}\n" + (f"VERSION_ID={quote}{version}{quote}\n" if version else "")
    info = osinfo.parse(text, source="/etc/os-release")
    assert info.id == os_id and info.version_id == version


@PROPERTY
@given(st.sampled_from(["Y", "y", "1", "yes", "on", "true", "TRUE", " Y\n"]), st.sampled_from(["N", "n", "0", "no", "off", "false", "N\n"]))
def test_parse_bool_knows_both_spellings(yes: str, no: str) -> None:
    assert modules.parse_bool(yes) is True and modules.parse_bool(no) is False


# -- digits that int() rejects (str.isdigit() is true for superscripts) -----------------------


def test_cpuinfo_superscript_processor_count() -> None:
    info = cpuinfo.parse("vendor_id : IBM/S390\n# processors : \u00b2\nbogomips per cpu: 1\n")
    assert info.error is None and info.vendor == "IBM/S390"
    assert info.logical_cpus is None  # "²" is no count


def test_meminfo_superscript_number() -> None:
    info = memory.parse("MemTotal: \u00b2 kB\n")
    assert info.total_bytes is None and info.error


def test_etc_group_superscript_gid() -> None:
    table = accounts.parse("kvm:x:\u00b2:alice\nrender:x:993:alice\n")
    assert "kvm" not in table.by_name  # a group without a usable gid is skipped, not guessed
    assert table.by_name["render"].gid == 993


def test_no_check_crashes_on_superscript_digits() -> None:
    files = dict(REAL_LOOKING)
    files["/proc/meminfo"] = "MemTotal: \u00b9\u00b2 kB\n".encode()
    files["/etc/group"] = "kvm:x:\u00b3:alice\n".encode()
    facts = Facts(_host(files))
    crashed = {r.id: r.summary for target in Target for r in run(facts, target) if "exception" in r.evidence}
    assert crashed == {}


def test_non_decimal_digit_table_holds_what_the_tests_need() -> None:
    assert "\u00b2" in NON_DECIMAL_DIGITS and "7" not in NON_DECIMAL_DIGITS and "\u0667" not in NON_DECIMAL_DIGITS
    assert all(ch.isdigit() for ch in NON_DECIMAL_DIGITS)
