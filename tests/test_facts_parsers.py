"""The fact parsers on small inputs and their edge cases.

Every source is fed through a MemoryHost (never the real machine), so each
test shows exactly which file content leads to which fact.
"""

from __future__ import annotations

import os

import pytest

from kvmready import cpuvendors
from kvmready.facts import Facts, cpuinfo, firmware, hypervisor, kernel, memory, modules, osinfo
from kvmready.host import MemoryHost

# -- cpuinfo ------------------------------------------------------------------------------------
X86_BASE = "fpu vme de pse tsc msr pae lm constant_tsc nonstop_tsc"


def x86_block(n: int, flags: str, vendor: str = "GenuineIntel", extra: str = "") -> str:
    return (
        f"processor\t: {n}\n"
        f"vendor_id\t: {vendor}\n"
        "cpu family\t: 6\n"
        "model name\t: Test CPU @ 3.00GHz\n"
        f"flags\t\t: {flags}\n"
        f"{extra}"
    )


def cpus(*blocks: str) -> str:
    return "\n".join(blocks) + "\n"


S390_CPUINFO = (
    "vendor_id       : IBM/S390\n"
    "# processors    : 3\n"
    "bogomips per cpu: 14367.00\n"
    "features\t: esan3 zarch stfle msa ldisp eimm dfp edat etf3eh highgprs sie\n"
    "processor 0: version = FF,  identification = 29AA14,  machine = 2817\n"
    "processor 1: version = FF,  identification = 29AA14,  machine = 2817\n"
    "processor 2: version = FF,  identification = 29AA14,  machine = 2817\n"
)

AARCH64_CPUINFO = (
    "processor\t: 0\nBogoMIPS\t: 38.40\nFeatures\t: fp asimd evtstrm aes\nCPU implementer\t: 0x41\n"
    "CPU architecture: 8\nCPU variant\t: 0x1\nCPU part\t: 0xd46\nCPU revision\t: 1\n\n"
    "processor\t: 1\nBogoMIPS\t: 38.40\nFeatures\t: fp asimd evtstrm aes sve\nCPU implementer\t: 0x41\n"
    "CPU architecture: 8\nCPU variant\t: 0x1\nCPU part\t: 0xd4d\nCPU revision\t: 0\n"
)


def test_cpuinfo_flags_are_the_union_of_every_block():
    info = cpuinfo.parse(cpus(x86_block(0, X86_BASE + " vmx aes"), x86_block(1, X86_BASE + " vmx avx2")))
    assert {"aes", "avx2", "vmx", "lm"} <= info.flags
    assert info.logical_cpus == 2
    assert info.flag_lines == 2
    assert info.vmx_cpus == 2
    assert info.virtualization == "vt-x"
    assert info.vendor == "GenuineIntel"
    assert info.model == "Test CPU @ 3.00GHz"


def test_cpuinfo_counts_vmx_per_cpu_when_firmware_left_it_off_on_some():
    info = cpuinfo.parse(cpus(x86_block(0, X86_BASE + " vmx"), x86_block(1, X86_BASE), x86_block(2, X86_BASE)))
    assert info.vmx_cpus == 1
    assert info.flag_lines == 3
    assert "vmx" in info.flags  # the union shows it; the count tells the truth


def test_cpu_virtualization_fails_when_only_some_cpus_have_vmx():
    from kvmready.checks.cpu import check_virtualization
    from kvmready.model import Status, Target
    from kvmready.targets import policy

    host = MemoryHost({"/proc/cpuinfo": cpus(x86_block(0, X86_BASE + " vmx"), x86_block(1, X86_BASE)).encode()})
    outcome = check_virtualization(Facts(host), policy(Target.KVM))
    assert outcome.status is Status.FAIL
    assert "only 1 of 2 CPUs" in outcome.summary


def test_cpuinfo_vmx_flags_line_is_read_and_united():
    text = cpus(
        x86_block(0, X86_BASE + " vmx", extra="vmx flags\t: vnmi ept vpid\n"),
        x86_block(1, X86_BASE + " vmx", extra="vmx flags\t: vnmi ept unrestricted_guest\n"),
    )
    info = cpuinfo.parse(text)
    assert info.vmx_features == frozenset({"vnmi", "ept", "vpid", "unrestricted_guest"})


def test_cpuinfo_without_vmx_flags_line_says_none_not_empty():
    assert cpuinfo.parse(cpus(x86_block(0, X86_BASE + " vmx"))).vmx_features is None


def test_cpuinfo_svm_is_amd_v():
    info = cpuinfo.parse(cpus(x86_block(0, X86_BASE + " svm npt", vendor="AuthenticAMD")))
    assert info.svm_cpus == 1 and info.vmx_cpus == 0
    assert info.virtualization == "amd-v"
    assert info.vendor == "AuthenticAMD"


def test_cpuinfo_zhaoxin_vendor_is_read_stripped_and_known_as_vt_x():
    # CPUID's vendor string is "  Shanghai  "; the kernel prints it after "vendor_id\t: ".
    info = cpuinfo.parse(cpus(x86_block(0, X86_BASE + " vmx", vendor="  Shanghai  ")))
    assert info.vendor == "Shanghai"
    assert cpuvendors.extension_of(info.vendor) == cpuvendors.VMX
    assert info.virtualization == "vt-x"


def test_cpuinfo_x86_word_size_comes_from_the_kernels_layout_never_from_lm():
    # 64-bit kernels print fpu_exception/wp without fdiv_bug; 32-bit ones add fdiv_bug (arch/x86/kernel/cpu/proc.c).
    sixty_four = cpuinfo.parse(cpus(x86_block(0, X86_BASE, extra="fpu_exception\t: yes\nwp\t\t: yes\n"))).arch
    assert (sixty_four.family, sixty_four.bits, sixty_four.machine) == ("x86", 64, "x86_64")
    assert "fpu_exception\t: yes" in sixty_four.lines
    thirty_two = cpuinfo.parse(cpus(x86_block(0, X86_BASE, extra="fdiv_bug\t: no\nfpu_exception\t: yes\nwp\t\t: yes\n"))).arch
    assert (thirty_two.family, thirty_two.bits, thirty_two.machine) == ("x86", 32, "i686")
    assert "fdiv_bug\t: no" in thirty_two.lines
    # `lm` alone: the CPU could run a 64-bit kernel; which kernel runs is unknown.
    unknown = cpuinfo.parse(cpus(x86_block(0, X86_BASE))).arch
    assert (unknown.family, unknown.bits, unknown.machine) == ("x86", None, None)
    # Without lm the CPU cannot run a 64-bit kernel at all.
    assert cpuinfo.parse(cpus(x86_block(0, "fpu vme de pse tsc"))).arch.bits == 32


def test_cpuinfo_s390_header_block():
    info = cpuinfo.parse(S390_CPUINFO)
    assert info.vendor == "IBM/S390"
    assert info.logical_cpus == 3  # from `# processors`, not the per-CPU lines
    assert (info.arch.family, info.arch.bits, info.arch.machine) == ("s390", 64, "s390x")  # `zarch`
    assert "sie" in info.flags
    assert info.virtualization == "sie"
    assert info.error is None


def test_cpuinfo_s390_without_sie_has_no_virtualization():
    info = cpuinfo.parse(S390_CPUINFO.replace(" sie", ""))
    assert info.virtualization is None


def test_cpuinfo_aarch64():
    info = cpuinfo.parse(AARCH64_CPUINFO)
    assert (info.arch.family, info.arch.bits, info.arch.machine) == ("arm", 64, "aarch64")
    assert info.vendor == "ARM"
    assert info.logical_cpus == 2
    assert info.flags == frozenset({"fp", "asimd", "evtstrm", "aes", "sve"})
    assert info.virtualization is None


def test_cpuinfo_armv7_and_unknown_implementer():
    text = AARCH64_CPUINFO.replace("CPU architecture: 8", "CPU architecture: 7").replace("0x41", "0x99")
    info = cpuinfo.parse(text)
    # A 32-bit ARM kernel; without the `(v7l)` platform the exact machine name stays unknown (ARM1176 says 7 too).
    assert (info.arch.family, info.arch.bits, info.arch.machine) == ("arm", 32, None)
    assert info.vendor == "ARM implementer 0x99"
    named = cpuinfo.parse(text.replace("processor\t: 0\n", "processor\t: 0\nmodel name\t: ARMv7 Processor rev 3 (v7l)\n", 1))
    assert named.arch.machine == "armv7l"


def test_cpuinfo_counts_garbage_lines_and_keeps_the_rest():
    text = "this is not cpuinfo\n" + cpus(x86_block(0, X86_BASE + " vmx")) + "%%%\n"
    info = cpuinfo.parse(text)
    assert info.garbage_lines == 2
    assert info.vmx_cpus == 1
    assert info.readable


@pytest.mark.parametrize("text", ["", "\n\n\n", "garbage\nmore garbage\n"])
def test_cpuinfo_empty_or_only_garbage_is_an_error(text):
    info = cpuinfo.parse(text)
    assert not info.readable
    assert "no `key : value` lines" in info.error
    assert info.virtualization is None


def test_cpuinfo_blocks_without_blank_lines_split_at_processor():
    text = "processor : 0\nflags : fpu lm vmx\nprocessor : 1\nflags : fpu lm\n"
    info = cpuinfo.parse(text)
    assert info.logical_cpus == 2
    assert info.vmx_cpus == 1


def test_cpuinfo_collect_turns_a_missing_file_into_an_error():
    info = cpuinfo.collect(MemoryHost({}))
    assert not info.readable and "ENOENT" in info.error


# -- kernel release ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("release", "version"),
    [
        ("6.8.0-45-generic", (6, 8, 0)),
        ("5.14.0-427.13.1.el9_4.x86_64", (5, 14, 0)),
        ("6.18.44-fc-v669", (6, 18, 44)),
        ("6.18", (6, 18, 0)),
        ("  4.19.0  \n", (4, 19, 0)),
        ("2.6.22", (2, 6, 22)),
    ],
)
def test_parse_release(release, version):
    assert kernel.parse_release(release) == version


@pytest.mark.parametrize("release", ["", "garbage", "v6.8.0", "six.eight", "6", "-6.8"])
def test_parse_release_garbage_is_none(release):
    assert kernel.parse_release(release) is None


def test_kernel_release_prefers_osrelease():
    host = MemoryHost({
        "/proc/sys/kernel/osrelease": b"6.8.0-45-generic\n",
        "/proc/version": b"Linux version 5.4.0-1-generic (x@y) #1 SMP\n",
    })
    info = kernel.collect(host)
    assert (info.release, info.version, info.source) == ("6.8.0-45-generic", (6, 8, 0), "/proc/sys/kernel/osrelease")


def test_kernel_release_falls_back_to_proc_version():
    host = MemoryHost({"/proc/version": b"Linux version 6.18.44-fc-v669 (builder@sandboxing) (gcc 15.3.0) #1 SMP\n"})
    info = kernel.collect(host)
    assert (info.release, info.version, info.source) == ("6.18.44-fc-v669", (6, 18, 44), "/proc/version")


def test_kernel_release_unknown_in_a_tree_never_asks_the_analysing_machine():
    info = kernel.collect(MemoryHost({"/proc/sys/kernel/osrelease": b"\n"}))
    assert info.release is None and info.version is None
    assert "empty" in info.error and "ENOENT" in info.error


def test_kernel_release_that_does_not_parse_keeps_the_text():
    info = kernel.collect(MemoryHost({"/proc/sys/kernel/osrelease": b"custom-kernel\n"}))
    assert info.release == "custom-kernel" and info.version is None


def test_cmdline_params_normalise_module_names():
    host = MemoryHost({"/proc/cmdline": b"quiet kvm-intel.nested=1 kvm.enable_vmware_backdoor=Y -- init-arg=1\n"})
    params = kernel.collect(host).cmdline_params
    assert params == {"quiet": "", "kvm_intel.nested": "1", "kvm.enable_vmware_backdoor": "Y"}


# -- architecture --------------------------------------------------------------------------------------
X86_64_LAYOUT = cpuinfo.CpuArch("x86", 64, "x86_64", ("fpu_exception\t: yes",), "layout")
X86_UNKNOWN = cpuinfo.CpuArch("x86", None, None, ("vendor_id\t: GenuineIntel",), "no misc lines")
S390_LAYOUT = cpuinfo.CpuArch("s390", 64, "s390x", ("features\t: zarch",), "zarch")


def test_arch_sysctl_wins_over_everything():
    host = MemoryHost({"/proc/sys/kernel/arch": b"aarch64\n"})
    arch = kernel.detect_arch(host, X86_64_LAYOUT, "6.8.0-1.x86_64")
    assert (arch.name, arch.source, arch.family, arch.bits) == ("aarch64", "/proc/sys/kernel/arch", "arm", 64)


def test_arch_sysctl_aliases_are_normalised():
    arch = kernel.detect_arch(MemoryHost({"/proc/sys/kernel/arch": b"amd64\n"}), None, None)
    assert arch.name == "x86_64" and arch.label == "x86_64"


def test_arch_unknown_sysctl_value_falls_through_to_cpuinfo():
    arch = kernel.detect_arch(MemoryHost({"/proc/sys/kernel/arch": b"banana\n"}), S390_LAYOUT, None)
    assert (arch.name, arch.source) == ("s390x", "/proc/cpuinfo (format)")
    assert arch.clues[0].used is False


class _LiveMemoryHost(MemoryHost):
    """A memory host that says it is the machine itself, so detect_arch asks uname(2) (patched by the test)."""

    live = True


I686_LAYOUT = cpuinfo.CpuArch("x86", 32, "i686", ("fdiv_bug\t: no",), "32-bit only keys")


@pytest.mark.parametrize(("layout", "expected"), [(X86_64_LAYOUT, ("x86_64", "/proc/cpuinfo (format)", 64)),
                                                   (I686_LAYOUT, ("i686", "uname(2)", 32)),
                                                   (None, ("i686", "uname(2)", 32))])
def test_arch_uname_under_a_32_bit_personality_loses_to_the_cpuinfo_layout(monkeypatch, layout, expected):
    """`setarch i686` (a 32-bit build chroot) makes uname(2) say i686 on a 64-bit kernel; without
    /proc/sys/kernel/arch (RHEL 9's 5.14 has none) and a release suffix, kvmready called the kernel 32-bit."""
    monkeypatch.setattr(os, "uname", lambda: os.uname_result(("Linux", "box", "6.8.0-45-generic", "#1", "i686")))
    arch = kernel.detect_arch(_LiveMemoryHost({}), layout, "6.8.0-45-generic")
    assert (arch.name, arch.source, arch.bits) == expected
    uname = next(clue for clue in arch.clues if clue.source == "uname(2)")
    assert uname.used is (expected[1] == "uname(2)")


def test_arch_cpuinfo_family_wins_over_a_contradicting_release_suffix():
    arch = kernel.detect_arch(MemoryHost({}), X86_64_LAYOUT, "5.14.0-427.el9.aarch64")
    assert arch.name == "x86_64"
    assert [clue.used for clue in arch.clues] == [False, True]


def test_arch_release_suffix_names_the_kernel_when_cpuinfo_cannot():
    arch = kernel.detect_arch(MemoryHost({}), X86_UNKNOWN, "4.19.0-6-686-pae")
    assert (arch.name, arch.bits, arch.source) == ("i686", 32, "/proc/sys/kernel/osrelease (suffix)")
    assert kernel.detect_arch(MemoryHost({}), X86_UNKNOWN, "6.1.0-18-amd64").name == "x86_64"
    assert kernel.detect_arch(MemoryHost({}), X86_UNKNOWN, "2.6.18-238.el5PAE").name == "i686"
    assert kernel.detect_arch(MemoryHost({}), X86_UNKNOWN, "3.2.0-4-generic-pae").name == "i686"
    # Patch levels are not flavours: 4.4.486 says nothing.
    assert kernel.detect_arch(MemoryHost({}), X86_UNKNOWN, "4.4.486").name is None


def test_arch_from_the_release_suffix_without_cpuinfo():
    arch = kernel.detect_arch(MemoryHost({}), None, "5.14.0-427.13.1.el9_4.aarch64")
    assert (arch.name, arch.source) == ("aarch64", "/proc/sys/kernel/osrelease (suffix)")
    assert kernel.detect_arch(MemoryHost({}), None, "6.1.0-18-arm64").name == "aarch64"


def test_arch_unknown_in_a_tree_is_none_never_the_analysing_machine():
    arch = kernel.detect_arch(MemoryHost({}), None, "6.8.0-45-generic")
    assert arch.name is None and arch.source is None and arch.family is None
    assert "neither" in arch.error


def test_arch_x86_of_unknown_width_is_the_family_x86():
    arch = kernel.detect_arch(MemoryHost({}), X86_UNKNOWN, "6.8.0-45-generic")
    assert (arch.name, arch.family, arch.bits, arch.label) == (None, "x86", None, "x86")
    assert arch.is_x86 and not arch.known_not_x86


def test_arch_width_from_proc_modules_addresses():
    arch = kernel.detect_arch(MemoryHost({}), X86_UNKNOWN, None, module_bits=lambda: (32, "kvm 1 0 - Live 0xf8a5e000"))
    assert (arch.name, arch.bits, arch.source) == ("i686", 32, "/proc/modules (address width)")
    assert arch.clues[-1].lines == ("kvm 1 0 - Live 0xf8a5e000",)


def test_arch_highmem_means_a_32_bit_kernel():
    arch = kernel.detect_arch(MemoryHost({}), X86_UNKNOWN, None, module_bits=lambda: None, highmem=lambda: True)
    assert (arch.name, arch.bits) == ("i686", 32)


def elf_header(ei_class: int, little: bool, machine: int) -> bytes:
    order = "little" if little else "big"
    return b"\x7fELF" + bytes([ei_class, 1 if little else 2, 1]) + bytes(11) + (3).to_bytes(2, order) + machine.to_bytes(2, order) + bytes(44)


def test_arch_from_the_vdso_elf_class_widest_wins():
    release = "4.19.0-6-generic"
    host = MemoryHost({
        f"/lib/modules/{release}/vdso/vdso32.so": elf_header(1, True, 3),
        f"/lib/modules/{release}/vdso/vdso64.so": elf_header(2, True, 62),
    })
    arch = kernel.detect_arch(host, X86_UNKNOWN, release)
    assert (arch.name, arch.bits) == ("x86_64", 64)
    assert arch.source == f"/lib/modules/{release}/vdso (ELF class)"
    only32 = MemoryHost({f"/lib/modules/{release}/vdso/vdso32.so": elf_header(1, True, 3)})
    assert kernel.detect_arch(only32, X86_UNKNOWN, release).name == "i686"


def test_arch_ppc64_byte_order():
    layout = cpuinfo.CpuArch("powerpc", 64, None, ("platform\t: pSeries",), "pSeries")
    assert kernel.detect_arch(MemoryHost({}), layout, None).label == "powerpc"
    assert kernel.detect_arch(MemoryHost({"/sys/kernel/cpu_byteorder": b"little\n"}), layout, None).name == "ppc64le"
    assert kernel.detect_arch(MemoryHost({"/sys/kernel/cpu_byteorder": b"big\n"}), layout, None).name == "ppc64"


def test_arch_from_interfaces_only_one_kernel_has():
    assert kernel.detect_arch(MemoryHost({"/dev/mdesc": b""}), None, None).name == "sparc64"
    s390 = kernel.detect_arch(MemoryHost({"/proc/sysinfo": b"Manufacturer: IBM\n"}), None, None)
    assert (s390.family, s390.bits, s390.label) == ("s390", None, "s390")


def test_arch_of_a_cpuinfo_without_x86_signature_is_not_x86():
    layout = cpuinfo.parse("processor\t: 0\nBogoMIPS\t: 100.00\nsomething\t: else\n").arch
    assert layout.family is None and layout.not_x86
    arch = kernel.detect_arch(MemoryHost({}), layout, None)
    assert arch.known_not_x86 and not arch.is_x86 and arch.label is None


def test_facts_arch_uses_the_trees_cpuinfo_format():
    facts = Facts(MemoryHost({"/proc/cpuinfo": S390_CPUINFO.encode()}))
    assert facts.arch.name == "s390x"
    facts = Facts(MemoryHost({"/proc/cpuinfo": AARCH64_CPUINFO.encode(), "/proc/sys/kernel/osrelease": b"6.1.0-1.x86_64\n"}))
    assert facts.arch.name == "aarch64"


def test_facts_arch_reads_module_addresses_only_when_needed():
    x86 = cpus(x86_block(0, X86_BASE))
    facts = Facts(MemoryHost({"/proc/cpuinfo": x86.encode(), "/proc/modules": b"kvm 1 0 - Live 0xffffffffc0780000\n"}))
    assert (facts.arch.name, facts.arch.source) == ("x86_64", "/proc/modules (address width)")
    facts = Facts(MemoryHost({"/proc/cpuinfo": x86.encode(), "/proc/meminfo": b"MemTotal: 1 kB\nHighTotal: 1 kB\n"}))
    assert facts.arch.name == "i686"


# -- modules ---------------------------------------------------------------------------------------------
PROC_MODULES = (
    "kvm_intel 282624 0 - Live 0xffffffffc0780000\n"
    "kvm 663552 1 kvm_intel, Live 0xffffffffc05d6000\n"
    "vboxdrv 500000 0 - Loading 0x0\n"
    "this line is garbage\n"
    "\n"
)


def test_proc_modules_are_read_with_their_state():
    table = modules.collect(MemoryHost({"/proc/modules": PROC_MODULES.encode()}))
    assert table.get("kvm_intel") == modules.Module("kvm_intel", "live", "/proc/modules")
    assert table.get("vboxdrv").state == "loading"
    assert set(table.modules) == {"kvm_intel", "kvm", "vboxdrv"}
    assert table.known


def test_module_names_treat_dash_and_underscore_alike():
    table = modules.collect(MemoryHost({"/proc/modules": PROC_MODULES.encode()}))
    assert table.has("kvm-intel")
    assert table.get("kvm-intel").name == "kvm_intel"
    assert modules.module_name(" vhost-net ") == "vhost_net"


def test_sys_module_entries_not_in_proc_modules_are_built_in():
    host = MemoryHost({
        "/proc/modules": PROC_MODULES.encode(),
        "/sys/module/kvm_intel/initstate": b"live\n",
        "/sys/module/tun/parameters/x": b"1\n",
    })
    table = modules.collect(host)
    assert table.get("tun") == modules.Module("tun", "builtin", "/sys/module")
    assert table.get("kvm_intel").source == "/proc/modules"  # /proc/modules is kept where it speaks


def test_without_proc_modules_sysfs_initstate_decides():
    host = MemoryHost(
        {
            "/sys/module/kvm/parameters/halt_poll_ns": b"0\n",
            "/sys/module/kvm_pvm/parameters/force": b"N\n",
            "/sys/module/kvm_intel/initstate": b"live\n",
            "/sys/module/vhost_net/initstate": b"live\n",
        },
        errors={"/proc/modules": "No such file or directory (ENOENT)"},
    )
    table = modules.collect(host)
    assert table.get("kvm_pvm").builtin
    assert table.get("kvm").builtin
    assert table.get("kvm_intel").state == "live" and not table.get("kvm_intel").builtin
    # The state of modules no check reports is not read: 10,000 /sys/module entries cost 10,000 reads.
    assert table.get("vhost_net").state == modules.LISTED and table.has("vhost_net")
    assert table.proc_modules_error == "No such file or directory (ENOENT)"
    assert table.known
    assert table.sources() == {"/proc/modules": "No such file or directory (ENOENT)", "/sys/module": "read"}


def test_a_sys_module_directory_with_only_a_keep_file_is_a_built_in_module():
    host = MemoryHost({"/sys/module/kvm_pvm/.keep": b""})
    table = modules.collect(host)
    assert table.get("kvm_pvm") == modules.Module("kvm_pvm", "builtin", "/sys/module")
    assert not table.has(".keep")


def test_no_module_source_at_all_is_unknown():
    table = modules.collect(MemoryHost({}))
    assert not table.known
    assert table.modules == {}


def test_facts_kvm_module_prefers_the_vendor_module():
    facts = Facts(MemoryHost({"/proc/modules": PROC_MODULES.encode()}))
    assert facts.kvm_module == "kvm_intel"
    facts = Facts(MemoryHost({"/proc/modules": b"kvm 1 0 - Live 0x0\n"}))
    assert facts.kvm_module == "kvm"


@pytest.mark.parametrize(
    ("value", "flag"),
    [("Y", True), ("1", True), ("y", True), ("N", False), ("0", False), ("maybe", None)],
)
def test_module_parameter_flags(value, flag):
    host = MemoryHost({"/sys/module/kvm_amd/parameters/nested": f"{value}\n".encode()})
    params = modules.read_params(host, "kvm-amd")
    assert params.get("nested") == value
    assert params.flag("nested") is flag


def test_kvm_amd_nested_1_passes_the_nested_check():
    from kvmready.checks.kvm import check_nested
    from kvmready.model import Status, Target
    from kvmready.targets import policy

    host = MemoryHost({
        "/proc/modules": b"kvm_amd 1 0 - Live 0x0\nkvm 1 1 kvm_amd, Live 0x0\n",
        "/sys/module/kvm_amd/parameters/nested": b"1\n",
    })
    outcome = check_nested(Facts(host), policy(Target.WORKSTATION))
    assert outcome.status is Status.PASS
    assert "kvm_amd nested=1" in outcome.summary


def test_module_parameters_directory_missing():
    host = MemoryHost({"/sys/module/kvm_intel/parameters/ept": b"Y\n"})
    params = modules.read_params(host, "kvm_intel")
    assert params.values == {"ept": "Y"} and params.error is None
    assert params.path("nested") == "/sys/module/kvm_intel/parameters/nested"
    missing = modules.read_params(host, "kvm_amd")
    assert missing.values == {} and "ENOENT" in missing.error


def test_an_unreadable_module_parameter_is_kept_with_its_reason(tmp_path):
    from kvmready.host import DirectoryHost

    parameters = tmp_path / "sys" / "module" / "kvm_intel" / "parameters"
    parameters.mkdir(parents=True)
    (parameters / "ept").write_text("Y\n")
    (parameters / "vmentry_l1d_flush").mkdir()  # stands in for a 0400 file: root would read that one anyway
    params = modules.read_params(DirectoryHost(str(tmp_path)), "kvm_intel")
    assert params.values == {"ept": "Y"}
    assert params.errors == {"vmentry_l1d_flush": "not a regular file (dir)"}


# -- meminfo ------------------------------------------------------------------------------------------------
def test_meminfo_kib_to_bytes():
    info = memory.parse("MemTotal:       16384 kB\nMemFree: 1 kB\nMemAvailable:    8192 kB\nHugePages_Total:       0\n")
    assert info.total_bytes == 16384 * 1024
    assert info.available_bytes == 8192 * 1024
    assert info.error is None


def test_meminfo_without_memtotal_is_an_error():
    info = memory.parse("MemFree: 10 kB\ngarbage line\n")
    assert info.total_bytes is None
    assert info.error == "no MemTotal line"


def test_meminfo_skips_garbage():
    info = memory.parse("???\nMemTotal: lots kB\nMemTotal:   2048 kB\n")
    assert info.total_bytes == 2048 * 1024


def test_meminfo_missing_file():
    assert "ENOENT" in memory.collect(MemoryHost({})).error


# -- os-release ------------------------------------------------------------------------------------------------
def test_os_release_quotes_and_comments():
    text = (
        "# a comment\n"
        'PRETTY_NAME="Ubuntu 24.04.1 LTS"\n'
        "NAME='Ubuntu'\n"
        "VERSION_ID=\"24.04\"  # trailing comment\n"
        "ID=ubuntu\n"
        "ID_LIKE=debian\n"
        "not an assignment\n"
        "BAD KEY=1\n"
    )
    info = osinfo.parse(text, source="/etc/os-release")
    assert info.id == "ubuntu"
    assert info.version_id == "24.04"
    assert info.name == "Ubuntu 24.04.1 LTS"
    assert info.id_like == ("debian",)
    assert info.to_dict() == {"id": "ubuntu", "version": "24.04", "name": "Ubuntu 24.04.1 LTS"}


def test_os_release_unbalanced_quote_keeps_the_text():
    values = osinfo.parse_assignments('NAME="Broken Linux\nID=broken\n')
    assert values["NAME"] == "Broken Linux"
    assert values["ID"] == "broken"


def test_os_release_defaults():
    info = osinfo.parse('NAME="Plain"\nVERSION="1 (one)"\n')
    assert info.id == "linux"  # os-release(5): ID defaults to linux
    assert info.name == "Plain 1 (one)"
    assert info.version_id is None


def test_os_release_empty_is_an_error():
    info = osinfo.parse("# nothing\n", source="/etc/os-release")
    assert info.error == "/etc/os-release: no KEY=value lines"


def test_os_release_falls_back_to_usr_lib():
    info = osinfo.collect(MemoryHost({"/usr/lib/os-release": b"ID=fedora\nVERSION_ID=42\n"}))
    assert (info.id, info.version_id, info.source) == ("fedora", "42", "/usr/lib/os-release")


def test_os_release_missing_everywhere():
    info = osinfo.collect(MemoryHost({}))
    assert info.id is None
    assert "/etc/os-release" in info.error and "/usr/lib/os-release" in info.error


# -- hypervisor -------------------------------------------------------------------------------------------------
DMI = "/sys/class/dmi/id"


def detect(files, flag=False, cpuid=None, errors=None):
    host = MemoryHost({path: (data.encode() if isinstance(data, str) else data) for path, data in files.items()}, errors=errors)
    return hypervisor.collect(host, flag, cpuid)


def test_bare_metal_without_any_clue():
    info = detect({f"{DMI}/sys_vendor": "Dell Inc.\n", f"{DMI}/product_name": "PowerEdge R640\n"})
    assert info.name is None and not info.is_guest


@pytest.mark.parametrize(
    ("vendor", "product", "name"),
    [
        ("QEMU", "Standard PC (Q35 + ICH9, 2009)", "qemu"),
        ("VMware, Inc.", "VMware Virtual Platform", "vmware"),
        ("innotek GmbH", "VirtualBox", "virtualbox"),
        ("Microsoft Corporation", "Virtual Machine", "hyperv"),
        ("Xen", "HVM domU", "xen"),
        ("Parallels Software International Inc.", "Parallels Virtual Platform", "parallels"),
        ("Amazon EC2", "m5.large", "kvm"),
        ("Google", "Google Compute Engine", "kvm"),
        ("OpenStack Foundation", "OpenStack Nova", "kvm"),
        ("Alibaba Cloud", "Alibaba Cloud ECS", "kvm"),
        ("Nutanix", "AHV", "kvm"),
        ("Red Hat", "RHEV Hypervisor", "kvm"),
        ("oVirt", "oVirt Node", "kvm"),
        ("QEMU", "KVM Virtual Machine", "kvm"),
        ("Red Hat", "HVM domU", "unknown"),
    ],
)
def test_dmi_names_the_hypervisor(vendor, product, name):
    info = detect({f"{DMI}/sys_vendor": vendor + "\n", f"{DMI}/product_name": product + "\n"})
    assert info.name == name


@pytest.mark.parametrize(
    ("files", "name", "vendor"),
    [
        ({"sys_vendor": "Amazon EC2", "product_name": "c5.large"}, "kvm", "amazon"),
        ({"sys_vendor": "Xen", "product_name": "HVM domU", "product_version": "4.2.amazon"}, "xen", "amazon"),
        ({"sys_vendor": "Google", "product_name": "Google Compute Engine"}, "kvm", "google"),
        ({"sys_vendor": "Alibaba Cloud", "product_name": "Alibaba Cloud ECS", "product_version": "pc-i440fx-2.1"}, "kvm", "alibaba"),
        ({"sys_vendor": "Nutanix", "product_name": "AHV", "chassis_vendor": "Red Hat"}, "kvm", "nutanix"),
        ({"sys_vendor": "Red Hat", "product_name": "RHEV Hypervisor"}, "kvm", "redhat"),
        ({"sys_vendor": "OpenStack Foundation", "product_name": "OpenStack Nova", "chassis_vendor": "QEMU"}, "kvm", "openstack"),
        ({"sys_vendor": "Microsoft Corporation", "product_name": "Virtual Machine"}, "hyperv", "microsoft"),
        ({"sys_vendor": "innotek GmbH", "product_name": "VirtualBox"}, "virtualbox", "oracle"),
        ({"sys_vendor": "QEMU", "product_name": "Standard PC (Q35 + ICH9, 2009)"}, "qemu", None),
        ({"sys_vendor": "Dell Inc.", "product_name": "PowerEdge R640"}, None, None),
        ({"sys_vendor": "Nutanix", "product_name": "NX-3060-G6"}, None, None),  # Nutanix hardware: no AHV, no VM
        ({"sys_vendor": "Google", "product_name": "Eve"}, None, None),  # a Pixelbook
    ],
)
def test_dmi_names_the_vendor_beside_the_hypervisor(files, name, vendor):
    info = detect({f"{DMI}/{field}": value + "\n" for field, value in files.items()})
    assert (info.name, info.vendor) == (name, vendor)


def test_ec2_metal_is_bare_metal_even_with_the_hypervisor_flag_absent_or_present():
    files = {f"{DMI}/sys_vendor": "Amazon EC2\n", f"{DMI}/product_name": "c5.metal\n"}
    for flag in (False, True):
        info = detect(files, flag=flag)
        assert info.name is None, flag
        assert info.clues[0] == hypervisor.Clue(f"{DMI}/product_name", "c5.metal", None)


def test_microsoft_surface_is_not_a_vm():
    info = detect({f"{DMI}/sys_vendor": "Microsoft Corporation\n", f"{DMI}/product_name": "Surface Laptop 5\n"})
    assert info.name is None


def test_qemu_with_kvm_visible_is_kvm():
    info = detect({f"{DMI}/sys_vendor": "QEMU\n", CLOCKSOURCE: "kvm-clock\n"})
    assert info.name == "kvm"


def test_sys_hypervisor_xen_without_proc_xen_is_domu():
    info = detect({"/sys/hypervisor/type": "xen\n"})
    assert info.name == "xen" and info.xen_role == "domU"


def test_proc_xen_control_d_is_dom0():
    info = detect({"/sys/hypervisor/type": "xen\n", "/proc/xen/capabilities": "control_d\n"})
    assert info.name == "xen" and info.xen_role == "dom0"


def test_empty_proc_xen_capabilities_is_domu():
    info = detect({"/proc/xen/capabilities": ""})
    assert info.name == "xen" and info.xen_role == "domU"


SYSINFO_LPAR = "Manufacturer: IBM\nType: 2817\nLPAR Number: 41\nLPAR Name: R17LP39\n"


@pytest.mark.parametrize(
    ("program", "name"),
    [("z/VM    7.2.0", "zvm"), ("KVM/Linux", "kvm"), ("Something Else", "unknown")],
)
def test_proc_sysinfo_control_program(program, name):
    info = detect({"/proc/sysinfo": SYSINFO_LPAR + f"VM00 Name: GUEST\nVM00 Control Program: {program}\n"})
    assert info.name == name


def test_proc_sysinfo_lpar_only_is_an_lpar_under_pr_sm_never_bare_metal():
    info = detect({"/proc/sysinfo": SYSINFO_LPAR})
    assert (info.name, info.vendor) == ("lpar", "ibm")
    assert info.clues[0].value == "LPAR Number: 41"


def test_device_tree_hypervisor_node():
    assert detect({"/proc/device-tree/hypervisor/compatible": b"linux,kvm\x00"}).name == "kvm"
    assert detect({"/proc/device-tree/hypervisor/compatible": b"xen,xen-4.17\x00xen,xen\x00"}).name == "xen"
    esx = detect({"/proc/device-tree/hypervisor/compatible": b"vmware\x00"})
    assert (esx.name, esx.vendor) == ("vmware", "vmware")
    # systemd: qemu,pseries without a hypervisor node is QEMU (TCG); with linux,kvm it is KVM.
    assert detect({"/proc/device-tree/compatible": b"qemu,pseries\x00"}).name == "qemu"
    assert detect({"/proc/device-tree/compatible": b"qemu,pseries\x00", "/proc/device-tree/hypervisor/compatible": b"linux,kvm\x00"}).name == "kvm"


def test_device_tree_dummy_virt_is_qemu_with_fw_cfg_and_kvmtool_without():
    qemu = detect({"/proc/device-tree/compatible": b"linux,dummy-virt\x00", "/proc/device-tree/fw-cfg@9020000/compatible": b"qemu,fw-cfg-mmio\x00"})
    assert qemu.name == "qemu"
    kvmtool = detect({"/proc/device-tree/compatible": b"linux,dummy-virt\x00"})
    assert (kvmtool.name, kvmtool.vendor) == ("kvm", "kvmtool")
    assert detect({"/proc/device-tree/fw-cfg@9020000/compatible": b"qemu,fw-cfg-mmio\x00"}).name == "qemu"


def test_device_tree_powervm_partition_properties():
    info = detect({"/proc/device-tree/ibm,partition-name": b"lp1\x00", "/proc/device-tree/hmc-managed?": b""})
    assert (info.name, info.vendor) == ("powervm", "ibm")


def test_xenbus_names_xen():
    info = detect({"/sys/bus/xen/drivers/vbd/bind": b""})
    assert info.name == "xen"


def detect_cpu(text, **files):
    info = cpuinfo.parse(text)
    host = MemoryHost({path: data.encode() for path, data in files.items()})
    return hypervisor.collect(host, "hypervisor" in info.flags, None, cpu=info)


@pytest.mark.parametrize(
    ("model", "name"),
    [
        ("QEMU Virtual CPU version 2.5+", "qemu"),
        ("Common KVM processor", "kvm"),
        ("Intel Xeon Processor (Skylake, IBRS)", "qemu"),
        ("Intel Celeron_4x0 (Conroe/Merom Class Core 2)", "qemu"),
        ("AMD EPYC-Rome Processor", "qemu"),
        ("Intel(R) Xeon(R) CPU E5-2680 v2 @ 2.80GHz", None),
        ("AMD EPYC 7451 24-Core Processor", None),
    ],
)
def test_virtual_cpu_model_names_a_guest_even_without_the_hypervisor_flag(model, name):
    text = cpus(x86_block(0, X86_BASE + " sse2 pge").replace("Test CPU @ 3.00GHz", model))
    info = detect_cpu(text)
    assert info.name == name
    if name:
        assert any(clue.value == f"model name\t: {model}" for clue in info.clues)


PSERIES = "processor\t: 0\ncpu\t\t: POWER8E (raw), altivec supported\nplatform\t: pSeries\nmodel\t\t: {model}\nmachine\t\t: CHRP {model}\n"


def test_pseries_emulated_by_qemu_is_qemu_and_a_powervm_partition_otherwise():
    qemu = detect_cpu(PSERIES.format(model="IBM pSeries (emulated by qemu)"), **{"/proc/ppc64/lparcfg": "serial_number=1\n"})
    assert qemu.name == "qemu"  # QEMU's pseries machine has an lparcfg too; the weaker powervm clue gives way
    powervm = detect_cpu(PSERIES.format(model="IBM,8233-E8B"))
    assert (powervm.name, powervm.vendor) == ("powervm", "ibm")
    powernv = detect_cpu("processor\t: 0\ncpu\t\t: POWER8E (raw)\nplatform\t: PowerNV\nmodel\t\t: 8247-22L\n")
    assert powernv.name is None


def test_sun4v_is_an_ldoms_guest_and_sun4u_is_not():
    assert detect_cpu("cpu\t\t: UltraSparc T5 (Niagara5)\ntype\t\t: sun4v\nncpus probed\t: 24\n").name == "ldoms"
    assert detect_cpu("cpu\t\t: TI UltraSparc IIi\ntype\t\t: sun4u\nncpus probed\t: 1\n").name is None


def test_s390_without_sysinfo_is_under_some_hypervisor():
    info = detect_cpu(S390_CPUINFO)
    assert info.name == "unknown"
    assert detect_cpu(S390_CPUINFO, **{"/proc/sysinfo": SYSINFO_LPAR}).name == "lpar"


def test_xen_pv_hides_pse_and_pge():
    info = detect_cpu(cpus(x86_block(0, "fpu tsc msr pae cx8 apic cmov pat clflush mmx fxsr sse sse2 syscall nx lm vmx")))
    assert info.name == "xen"
    assert info.xen_guest_type == "PV"
    assert detect_cpu(cpus(x86_block(0, "fpu pse tsc msr pae pge sse sse2 lm"))).name is None


CLOCKSOURCE = "/sys/devices/system/clocksource/clocksource0/current_clocksource"
AVAILABLE = "/sys/devices/system/clocksource/clocksource0/available_clocksource"


def test_current_clocksource_names_the_hypervisor():
    assert detect({CLOCKSOURCE: "kvm-clock\n"}).name == "kvm"
    assert detect({CLOCKSOURCE: "hyperv_clocksource_tsc_page\n"}).name == "hyperv"
    assert detect({CLOCKSOURCE: "xen\n"}).name == "xen"


def test_available_clocksource_names_it_when_current_is_tsc():
    info = detect({CLOCKSOURCE: "tsc\n", AVAILABLE: "tsc kvm-clock acpi_pm\n"})
    assert info.name == "kvm"
    assert info.clues[0].source == AVAILABLE


def test_tsc_alone_says_nothing():
    info = detect({CLOCKSOURCE: "tsc\n", AVAILABLE: "tsc hpet acpi_pm\n"})
    assert info.name is None


def test_virtual_pci_ids():
    pci = "0000\t80861237\t0\n0010\t80eebeef\t12\n"
    assert detect({"/proc/bus/pci/devices": pci}).name == "virtualbox"
    assert detect({"/proc/bus/pci/devices": "0078\t15ad0405\t0\n"}).name == "vmware"
    assert detect({"/proc/bus/pci/devices": "0000\t80861237\t0\n"}).name is None


@pytest.mark.parametrize(
    ("signature", "name"),
    [("KVMKVMKVM\x00\x00\x00", "kvm"), ("Microsoft Hv", "hyperv"), ("VMwareVMware", "vmware"), ("Whatever", "unknown"),
     ("LKVMLKVMLKVM", "kvm"), ("OpenBSDVMM58", "vmm"), ("Linux KVM Hv", "kvm")],
)
def test_cpuid_signature(signature, name):
    info = detect({}, cpuid=signature)
    assert info.name == name
    assert info.clues[0].source == "cpuid 0x40000000"


def test_cpuid_signature_comes_before_dmi():
    info = detect({f"{DMI}/sys_vendor": "VMware, Inc.\n"}, cpuid="KVMKVMKVM\x00\x00\x00")
    assert info.name == "kvm"


def test_hypervisor_flag_alone_is_unknown():
    info = detect({}, flag=True)
    assert info.name == "unknown"


def test_unreadable_sources_are_recorded_not_fatal():
    info = detect({}, errors={f"{DMI}/sys_vendor": "Permission denied (EACCES)"})
    assert info.unreadable == (f"{DMI}/sys_vendor: Permission denied (EACCES)",)
    assert info.name is None


def test_facts_hypervisor_uses_the_cpuinfo_flag():
    facts = Facts(MemoryHost({"/proc/cpuinfo": cpus(x86_block(0, X86_BASE + " hypervisor")).encode()}))
    assert facts.hypervisor.name == "unknown"
    assert facts.cpuid_signature is None  # a tree: no CPUID of the machine running the analysis


# -- firmware ---------------------------------------------------------------------------------------------------
SECURE_BOOT = firmware.SECURE_BOOT_VAR


def test_secure_boot_on_and_off():
    on = firmware.collect(MemoryHost({SECURE_BOOT: b"\x06\x00\x00\x00\x01"}))
    off = firmware.collect(MemoryHost({SECURE_BOOT: b"\x06\x00\x00\x00\x00"}))
    assert (on.uefi, on.secure_boot, on.secure_boot_error) == (True, True, None)
    assert (off.uefi, off.secure_boot) == (True, False)


def test_secure_boot_variable_too_short():
    info = firmware.collect(MemoryHost({SECURE_BOOT: b"\x06\x00\x00\x00"}))
    assert info.secure_boot is None
    assert info.secure_boot_error == "4 bytes; an EFI boolean variable has 5"


def test_no_sys_firmware_means_unknown_not_bios():
    assert firmware.collect(MemoryHost({})).uefi is None


def test_sys_firmware_without_efi_is_legacy_bios():
    info = firmware.collect(MemoryHost({"/sys/firmware/acpi/tables/DSDT": b"x"}))
    assert info.uefi is False and info.secure_boot is None


@pytest.mark.parametrize(
    ("text", "mode"),
    [
        ("[none] integrity confidentiality\n", "none"),
        ("none [integrity] confidentiality\n", "integrity"),
        ("none integrity [confidentiality]\n", "confidentiality"),
    ],
)
def test_lockdown_brackets(text, mode):
    info = firmware.collect(MemoryHost({firmware.LOCKDOWN: text.encode()}))
    assert info.lockdown == mode and info.lockdown_error is None


def test_lockdown_without_brackets_is_an_error():
    info = firmware.collect(MemoryHost({firmware.LOCKDOWN: b"none integrity\n"}))
    assert info.lockdown is None
    assert "unexpected content" in info.lockdown_error


def test_lockdown_file_absent_from_a_mounted_securityfs_means_none():
    info = firmware.collect(MemoryHost({"/sys/kernel/security/apparmor/profiles": b""}))
    assert info.lockdown == "none"


def test_lockdown_unknown_without_securityfs():
    info = firmware.collect(MemoryHost({}))
    assert info.lockdown is None and "ENOENT" in info.lockdown_error


# --- kernel configuration -------------------------------------------------------------------------
def test_kernel_config_lookup_reads_one_symbol_exactly_as_kconfig_does():
    from kvmready.facts.kconfig import KernelConfig

    config = KernelConfig('CONFIG_KVM=m\nCONFIG_KVM_AMD=y\n# CONFIG_KVM_VMWARE is not set\nCONFIG_CMDLINE="a b"\n'
                          "CONFIG_HZ=250\r\nCONFIG_X=y\n# CONFIG_X is not set\nCONFIG_LAST=1")
    assert config.get("CONFIG_KVM") == "m"  # not CONFIG_KVM_AMD's value
    assert config.get("CONFIG_KVM_VMWARE") == "n"
    assert config.get("CONFIG_CMDLINE") == "a b" and config.get("CONFIG_HZ") == "250"
    assert config.get("CONFIG_X") == "n"  # the last line about a symbol wins
    assert config.get("CONFIG_LAST") == "1"  # no newline at the end
    assert config.get("CONFIG_KVM_INTEL") is None and KernelConfig().get("CONFIG_KVM") is None
    with pytest.raises(ValueError):
        config.get("KVM=y\nCONFIG_FAKE")


@pytest.mark.parametrize("damage", ["truncated", "bad crc", "not gzip", "too large"])
def test_kernel_config_refuses_a_damaged_config_gz_and_falls_back_to_boot(damage, monkeypatch):
    import gzip

    from kvmready.facts import kconfig
    from kvmready.host import MemoryHost

    good = gzip.compress(b"CONFIG_KVM=y\n" * 100)
    data = {"truncated": good[:-6], "bad crc": good[:-8] + b"\0\0\0\0" + good[-4:], "not gzip": b"CONFIG_KVM=y\n",
            "too large": good}[damage]
    monkeypatch.setattr(kconfig, "MAX_CONFIG_BYTES", 200 if damage == "too large" else kconfig.MAX_CONFIG_BYTES)
    host = MemoryHost({"/proc/config.gz": data, "/boot/config-6.8.0": b"CONFIG_KVM=m\n"})
    config = kconfig.collect(host, "6.8.0")
    assert (config.source, config.get("CONFIG_KVM")) == ("/boot/config-6.8.0", "m")
    assert kconfig.collect(MemoryHost({"/proc/config.gz": data}), "6.8.0").error.startswith("/proc/config.gz: ")
