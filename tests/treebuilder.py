"""Scenario host trees for tests: a dict of path -> content plus device nodes.

    tree = intel_desktop(cpus=4, mem_gib=16, kernel="6.12.0-1-generic")
    host = tree.host()              # a MemoryHost, with /dev nodes
    root = tree.write(tmp_path)     # a --root directory (git cannot hold device nodes,
                                    # so the nodes are left out there)

Every knob has a realistic default: `intel_desktop()` and `amd_desktop()` are
machines that should be ready for a KVM-backed Workstation.  `guest()` turns a
tree into a VM under an outer hypervisor; `pvm_host()` is the development
machine (kvm_pvm, no VT-x/AMD-V).  Trees are plain dicts, so a test can
add, replace or delete any file (`tree.without("/proc/modules")`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable, Mapping, Optional, Sequence, Tuple, Union

from kvmready.host import MemoryHost, Node

Content = Union[str, bytes]

KVM_GID = 992
RENDER_GID = 993
USER = "alice"
USER_UID = 1000

# Flags of a recent desktop CPU, shortened to what matters plus some filler.
X86_BASE_FLAGS = (
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ss ht "
    "syscall nx pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology nonstop_tsc cpuid aperfmperf pni "
    "pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt aes xsave avx f16c rdrand lahf_lm abm "
    "fsgsbase bmi1 avx2 smep bmi2 erms invpcid adx smap clflushopt clwb sha_ni xsaveopt xsavec xgetbv1 xsaves "
    "umip arat"
).split()
INTEL_VMX_FLAGS = "vnmi preemption_timer posted_intr invvpid ept_x_only ept_ad ept_1gb flexpriority apicv tsc_offset vtpr mtf vapic ept vpid unrestricted_guest vapic_reg vid ple shadow_vmcs pml ept_mode_based_exec tsc_scaling"
INTEL_EXTRA_FLAGS = ("vmx", "ds_cpl", "est", "tm2", "pdcm", "tpr_shadow", "flexpriority", "ept", "vpid", "ept_ad")
AMD_EXTRA_FLAGS = ("svm", "npt", "lbrv", "svm_lock", "nrip_save", "tsc_scale", "vmcb_clean", "flushbyasid",
                   "decodeassists", "pausefilter", "pfthreshold", "avic", "v_vmsave_vmload", "vgif", "extd_apicid",
                   "cr8_legacy", "sse4a", "misalignsse", "topoext")

DEFAULT_PARAMS: Dict[str, Dict[str, str]] = {
    "kvm": {"enable_vmware_backdoor": "N", "halt_poll_ns": "200000", "ignore_msrs": "N"},
    "kvm_intel": {"ept": "Y", "unrestricted_guest": "Y", "nested": "Y", "vpid": "Y"},
    "kvm_amd": {"npt": "1", "nested": "1", "avic": "0"},
    "kvm_pvm": {"force": "N"},
}

SECURE_BOOT_VAR = "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"
SETUP_MODE_VAR = "/sys/firmware/efi/efivars/SetupMode-8be4df61-93ca-11d2-aa0d-00e098032b8c"
EFI_ATTRIBUTES = b"\x06\x00\x00\x00"  # NV | BS | RT


def char_node(major: int, minor: int, mode: int = 0o660, uid: int = 0, gid: int = 0) -> Node:
    return Node(kind="char", mode=mode, uid=uid, gid=gid, major=major, minor=minor)


def kvm_node(mode: int = 0o660, gid: int = KVM_GID, major: int = 10, minor: int = 232, uid: int = 0) -> Node:
    return char_node(major, minor, mode, uid, gid)


class Tree(dict):
    """path -> content (str or bytes), and `nodes`: path -> Node for /dev."""

    def __init__(self, files: Optional[Mapping[str, Content]] = None, nodes: Optional[Mapping[str, Node]] = None) -> None:
        super().__init__(files or {})
        self.nodes: Dict[str, Node] = dict(nodes or {})

    def copy(self) -> Tree:
        return Tree(dict(self), dict(self.nodes))

    def without(self, *prefixes: str) -> Tree:
        """A copy without these paths, or anything below them (files and nodes)."""
        def keep(path: str) -> bool:
            return not any(path == p or path.startswith(p.rstrip("/") + "/") for p in prefixes)

        return Tree({p: c for p, c in self.items() if keep(p)}, {p: n for p, n in self.nodes.items() if keep(p)})

    def with_files(self, files: Mapping[str, Content]) -> Tree:
        tree = self.copy()
        tree.update(files)
        return tree

    def with_nodes(self, nodes: Mapping[str, Optional[Node]]) -> Tree:
        """Add or replace nodes; a value of None removes the node."""
        tree = self.copy()
        for path, node in nodes.items():
            if node is None:
                tree.nodes.pop(path, None)
            else:
                tree.nodes[path] = node
        return tree

    def host(self, errors: Optional[Mapping[str, str]] = None) -> MemoryHost:
        files = {path: data.encode() if isinstance(data, str) else bytes(data) for path, data in self.items()}
        return MemoryHost(files, nodes=self.nodes, errors=errors, origin="test tree")

    def write(self, root: Union[str, Path]) -> Path:
        """Write the files below root (device nodes cannot be: they are left out)."""
        root = Path(root)
        for path, data in self.items():
            target = root / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(data, bytes):
                target.write_bytes(data)
            else:
                target.write_text(data)
        return root


# -- the pieces ------------------------------------------------------------
def cpuinfo_x86(
    vendor: str,
    model: str,
    cpus: int,
    flags: Sequence[str],
    *,
    vmx_flags: Optional[str] = None,
    flag_cpus: Optional[Iterable[int]] = None,
    flags_elsewhere: Optional[Sequence[str]] = None,
    family: int = 6,
) -> str:
    """One block per CPU; `flag_cpus` (indexes) get `flags`, the others `flags_elsewhere`."""
    chosen = set(range(cpus)) if flag_cpus is None else set(flag_cpus)
    blocks = []
    for index in range(cpus):
        these = flags if index in chosen else (flags_elsewhere if flags_elsewhere is not None else flags)
        lines = [
            f"processor\t: {index}",
            f"vendor_id\t: {vendor}",
            f"cpu family\t: {family}",
            "model\t\t: 151",
            f"model name\t: {model}",
            "stepping\t: 2",
            "cpu MHz\t\t: 3600.000",
            "cache size\t: 30720 KB",
            "physical id\t: 0",
            f"siblings\t: {cpus}",
            f"core id\t\t: {index}",
            f"cpu cores\t: {cpus}",
            "fpu\t\t: yes",
            "cpuid level\t: 32",
            "wp\t\t: yes",
            "flags\t\t: " + " ".join(these),
        ]
        if vmx_flags is not None and (index in chosen or flags_elsewhere is None):
            lines.append(f"vmx flags\t: {vmx_flags}")
        lines += ["bugs\t\t: spectre_v1 spectre_v2", "bogomips\t: 7219.20", "clflush size\t: 64", "address sizes\t: 46 bits physical, 48 bits virtual", ""]
        blocks.append("\n".join(lines))
    return "\n".join(blocks) + "\n"


def cpuinfo_aarch64(cpus: int = 4) -> str:
    blocks = []
    for index in range(cpus):
        blocks.append(
            f"processor\t: {index}\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics\n"
            "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x3\nCPU part\t: 0xd0c\nCPU revision\t: 1\n"
        )
    return "\n".join(blocks)


def meminfo(total_kib: int) -> str:
    return (
        f"MemTotal:       {total_kib} kB\n"
        f"MemFree:        {total_kib // 2} kB\n"
        f"MemAvailable:   {total_kib * 3 // 4} kB\n"
        "Buffers:          102400 kB\n"
    )


def gib_to_kib(gib: float) -> int:
    return int(gib * 1024 * 1024)


def proc_modules(names: Iterable[str]) -> str:
    return "".join(f"{name} {100000 + index * 4096} 0 - Live 0x0000000000000000\n" for index, name in enumerate(names))


def os_release(os_id: str, version_id: Optional[str], name: Optional[str] = None, id_like: str = "") -> str:
    pretty = name or f"{os_id.capitalize()} {version_id or ''}".strip()
    lines = [f'PRETTY_NAME="{pretty}"', f'NAME="{os_id.capitalize()}"', f"ID={os_id}"]
    if version_id is not None:
        lines.append(f'VERSION_ID="{version_id}"')
    if id_like:
        lines.append(f"ID_LIKE={id_like}")
    return "\n".join(lines) + "\n"


def etc_group(*, kvm_gid: Optional[int] = KVM_GID, kvm_members: Sequence[str] = (USER,), extra: Sequence[str] = ()) -> str:
    lines = ["root:x:0:", "adm:x:4:syslog," + USER, "sudo:x:27:" + USER, f"render:x:{RENDER_GID}:", f"{USER}:x:{USER_UID}:"]
    if kvm_gid is not None:
        lines.append(f"kvm:x:{kvm_gid}:{','.join(kvm_members)}")
    lines.extend(extra)
    return "\n".join(lines) + "\n"


def efi_bool(value: bool) -> bytes:
    return EFI_ATTRIBUTES + (b"\x01" if value else b"\x00")


def lockdown_text(mode: str) -> str:
    return " ".join(f"[{m}]" if m == mode else m for m in ("none", "integrity", "confidentiality")) + "\n"


# -- whole machines ----------------------------------------------------------
def x86_machine(
    *,
    vendor: str,
    model: str,
    extension_flags: Sequence[str],
    cpus: int = 8,
    flags: Optional[Sequence[str]] = None,
    add_flags: Sequence[str] = (),
    remove_flags: Sequence[str] = (),
    vmx_flags: Optional[str] = None,
    flag_cpus: Optional[Iterable[int]] = None,
    mem_gib: float = 32,
    kernel: str = "6.8.0-45-generic",
    os: Tuple[str, Optional[str]] = ("ubuntu", "24.04"),
    os_name: Optional[str] = None,
    os_like: str = "",
    hostname: str = "desk",
    modules: Sequence[str] = (),
    builtin: Sequence[str] = (),
    proc_modules_file: bool = True,
    params: Optional[Mapping[str, Mapping[str, str]]] = None,
    dmi: Optional[Mapping[str, str]] = None,
    clocksource: str = "tsc",
    dev: bool = True,
    kvm: Optional[Node] = None,
    kvm_present: bool = True,
    tun: bool = True,
    vhost_net: bool = True,
    render: Optional[str] = "i915",
    uefi: Optional[bool] = True,
    secure_boot: Optional[bool] = False,
    lockdown: Optional[str] = "none",
    group: Optional[str] = None,
    cmdline: str = "BOOT_IMAGE=/boot/vmlinuz root=/dev/nvme0n1p2 ro quiet splash",
    arch_file: bool = True,
) -> Tree:
    """A whole x86 machine; see intel_desktop() and amd_desktop() for the defaults that matter."""
    if flags is None:
        flags = list(X86_BASE_FLAGS) + list(extension_flags)
    flags = [flag for flag in list(flags) + list(add_flags) if flag not in set(remove_flags)]
    without_extension = [flag for flag in flags if flag not in ("vmx", "svm")]
    files: Dict[str, Content] = {
        "/proc/cpuinfo": cpuinfo_x86(
            vendor, model, cpus, flags, vmx_flags=vmx_flags, flag_cpus=flag_cpus,
            flags_elsewhere=without_extension if flag_cpus is not None else None,
            family=6 if vendor == "GenuineIntel" else 25,
        ),
        "/proc/meminfo": meminfo(gib_to_kib(mem_gib)),
        "/proc/sys/kernel/osrelease": kernel + "\n",
        "/proc/sys/kernel/hostname": hostname + "\n",
        "/proc/version": f"Linux version {kernel} (buildd@lcy02) (gcc 13.2.0) #1 SMP PREEMPT_DYNAMIC\n",
        "/proc/cmdline": cmdline + "\n",
        "/sys/module/module/parameters/sig_enforce": "N\n",  # a distribution kernel: signatures checked, not enforced
        "/etc/os-release": os_release(os[0], os[1], os_name, os_like),
        "/etc/group": group if group is not None else etc_group(),
        "/sys/devices/system/clocksource/clocksource0/current_clocksource": clocksource + "\n",
        "/sys/devices/system/clocksource/clocksource0/available_clocksource": f"{clocksource} hpet acpi_pm\n",
    }
    if arch_file:
        files["/proc/sys/kernel/arch"] = "x86_64\n"
    all_params: Dict[str, Dict[str, str]] = {}
    for name in list(modules) + list(builtin):
        all_params[name] = dict(DEFAULT_PARAMS.get(name, {}))
    for name, values in (params or {}).items():
        all_params.setdefault(name, {}).update(values)
    if proc_modules_file:
        files["/proc/modules"] = proc_modules(modules)
    for name in modules:
        files[f"/sys/module/{name}/initstate"] = "live\n"
        files[f"/sys/module/{name}/refcnt"] = "0\n"
    for name in builtin:
        files[f"/sys/module/{name}/uevent"] = ""
    for name, values in all_params.items():
        for param, value in values.items():
            files[f"/sys/module/{name}/parameters/{param}"] = f"{value}\n"
    files["/sys/module/printk/parameters/time"] = "Y\n"  # /sys/module is never empty
    for field, value in (dmi if dmi is not None else {
        "sys_vendor": "Dell Inc.", "product_name": "OptiPlex 7090", "bios_vendor": "Dell Inc.",
        "board_vendor": "Dell Inc.", "chassis_vendor": "Dell Inc.",
    }).items():
        files[f"/sys/class/dmi/id/{field}"] = value + "\n"
    files["/sys/firmware/acpi/pm_profile"] = "1\n"
    if uefi:
        files["/sys/firmware/efi/fw_platform_size"] = "64\n"
        if secure_boot is not None:
            files[SECURE_BOOT_VAR] = efi_bool(secure_boot)
            files[SETUP_MODE_VAR] = efi_bool(False)
    elif uefi is None:
        files = {p: c for p, c in files.items() if not p.startswith("/sys/firmware/")}
    if lockdown is not None:
        files["/sys/kernel/security/lockdown"] = lockdown_text(lockdown)
    nodes: Dict[str, Node] = {}
    if dev:
        nodes["/dev/null"] = char_node(1, 3, 0o666)
        if kvm_present:
            nodes["/dev/kvm"] = kvm if kvm is not None else kvm_node()
        if tun:
            nodes["/dev/net/tun"] = char_node(10, 200, 0o666)
        if vhost_net:
            nodes["/dev/vhost-net"] = char_node(10, 238, 0o600)
        if render:
            nodes["/dev/dri/card0"] = char_node(226, 0, 0o660, gid=44)
            nodes["/dev/dri/renderD128"] = char_node(226, 128, 0o660, gid=RENDER_GID)
    if render:
        files["/sys/class/drm/renderD128/device/uevent"] = f"DRIVER={render}\nPCI_CLASS=30000\n"
        files["/sys/class/drm/card0/device/uevent"] = f"DRIVER={render}\nPCI_CLASS=30000\n"
    return Tree(files, nodes)


def intel_desktop(
    *,
    vmx: bool = True,
    vmx_flags: Optional[str] = INTEL_VMX_FLAGS,
    modules: Sequence[str] = ("kvm_intel", "kvm", "irqbypass", "tun", "vhost_net", "i915"),
    **knobs,
) -> Tree:
    """A bare-metal Intel desktop, ready for a KVM-backed Workstation (only the backdoor is off)."""
    extension = list(INTEL_EXTRA_FLAGS) if vmx else [f for f in INTEL_EXTRA_FLAGS if f not in ("vmx", "ept", "vpid", "flexpriority", "tpr_shadow", "ept_ad")]
    return x86_machine(
        vendor="GenuineIntel",
        model="12th Gen Intel(R) Core(TM) i7-12700",
        extension_flags=extension,
        vmx_flags=vmx_flags if vmx else None,
        modules=modules,
        **knobs,
    )


def amd_desktop(
    *,
    svm: bool = True,
    modules: Sequence[str] = ("kvm_amd", "kvm", "ccp", "irqbypass", "tun", "vhost_net", "amdgpu"),
    render: Optional[str] = "amdgpu",
    **knobs,
) -> Tree:
    """A bare-metal AMD desktop, ready for a KVM-backed Workstation (only the backdoor is off)."""
    extension = list(AMD_EXTRA_FLAGS) if svm else [f for f in AMD_EXTRA_FLAGS if f not in ("svm", "npt", "svm_lock", "nrip_save", "avic", "vgif")]
    knobs.setdefault("dmi", {"sys_vendor": "Micro-Star International Co., Ltd.", "product_name": "MS-7C56",
                             "bios_vendor": "American Megatrends International, LLC.", "board_vendor": "Micro-Star International Co., Ltd."})
    return x86_machine(
        vendor="AuthenticAMD",
        model="AMD Ryzen 9 7950X 16-Core Processor",
        extension_flags=extension,
        modules=modules,
        render=render,
        **knobs,
    )


QEMU_DMI = {
    "sys_vendor": "QEMU",
    "product_name": "Standard PC (Q35 + ICH9, 2009)",
    "bios_vendor": "SeaBIOS",
    "chassis_vendor": "QEMU",
}


def kvm_guest(*, nested: bool, vendor: str = "intel", **knobs) -> Tree:
    """A Linux VM under QEMU/KVM; with `nested`, the outer host exposes VT-x (or AMD-V)."""
    knobs.setdefault("dmi", QEMU_DMI)
    knobs.setdefault("clocksource", "kvm-clock")
    knobs.setdefault("render", "virtio_gpu")
    knobs.setdefault("hostname", "guest")
    knobs.setdefault("cpus", 4)
    knobs.setdefault("mem_gib", 16)
    knobs.setdefault("uefi", False)
    knobs.setdefault("secure_boot", None)
    add = list(knobs.pop("add_flags", ())) + ["hypervisor"]
    if vendor == "intel":
        if nested:
            knobs.setdefault("modules", ("kvm_intel", "kvm", "irqbypass", "tun", "vhost_net", "virtio_gpu"))
        else:
            knobs.setdefault("modules", ("tun", "virtio_gpu"))
            knobs.setdefault("kvm_present", False)
        return intel_desktop(vmx=nested, add_flags=add, **knobs)
    if nested:
        knobs.setdefault("modules", ("kvm_amd", "kvm", "irqbypass", "tun", "vhost_net", "virtio_gpu"))
    else:
        knobs.setdefault("modules", ("tun", "virtio_gpu"))
        knobs.setdefault("kvm_present", False)
    return amd_desktop(svm=nested, add_flags=add, **knobs)


def pvm_host(**knobs) -> Tree:
    """The development machine: a Firecracker microVM on an AMD EPYC host, KVM through kvm_pvm.

    No vmx/svm, the `hypervisor` flag, kvm and kvm_pvm only under /sys/module
    (no /proc/modules: `nomodule`), no DMI, kvm-clock, /dev/kvm root:root 0600,
    no render node, no vhost-net, Debian 12, kernel 6.18.
    """
    knobs.setdefault("cpus", 2)
    knobs.setdefault("mem_gib", 23.5)
    knobs.setdefault("kernel", "6.18.44-fc-v669")
    knobs.setdefault("os", ("debian", "12"))
    knobs.setdefault("os_name", "Debian GNU/Linux 12 (bookworm)")
    knobs.setdefault("hostname", "vm")
    knobs.setdefault("clocksource", "kvm-clock")
    knobs.setdefault("dmi", {})
    knobs.setdefault("uefi", False)
    knobs.setdefault("secure_boot", None)
    knobs.setdefault("lockdown", None)
    knobs.setdefault("render", None)
    knobs.setdefault("vhost_net", False)
    knobs.setdefault("kvm", kvm_node(mode=0o600, gid=0))
    knobs.setdefault("group", etc_group(kvm_gid=None))
    knobs.setdefault("cmdline", "console=ttyS0 reboot=k panic=1 nomodule")
    params = {"kvm": {"enable_virt_at_load": "Y", "enable_vmware_backdoor": "N"}}
    params.update(knobs.pop("params", {}) or {})
    tree = amd_desktop(
        svm=False,
        modules=(),
        builtin=("kvm", "kvm_pvm"),
        proc_modules_file=False,
        add_flags=("hypervisor",),
        remove_flags=("svm", "npt"),
        params=params,
        **knobs,
    )
    return tree.with_files({"/proc/cpuinfo": tree["/proc/cpuinfo"].replace(
        "AMD Ryzen 9 7950X 16-Core Processor", "AMD EPYC")})


def aarch64_machine(**knobs) -> Tree:
    """An arm64 server with KVM built in (no vendor module on arm64)."""
    knobs.setdefault("builtin", ("kvm",))
    tree = intel_desktop(modules=(), **knobs)
    return tree.with_files({
        "/proc/cpuinfo": cpuinfo_aarch64(),
        "/proc/sys/kernel/arch": "aarch64\n",
    })


def dmi_only(fields: Mapping[str, str]) -> Tree:
    """A tree with nothing but /sys/class/dmi/id: what a dmidecode dump tells."""
    return Tree({f"/sys/class/dmi/id/{field}": value + "\n" for field, value in fields.items()})


def openstack_nova_guest() -> Tree:
    """DMI of an OpenStack Nova 14 guest (pc-i440fx-xenial), as a public dmidecode dump shows it.

    The dump itself carries no licence, so only its strings (facts) are used, written out here.
    """
    return dmi_only({
        "sys_vendor": "OpenStack Foundation",
        "product_name": "OpenStack Nova",
        "product_version": "14.0.10",
        "product_family": "Virtual Machine",
        "bios_vendor": "SeaBIOS",
        "bios_version": "2:1.10.2-58953eb7",
        "bios_date": "04/01/2014",
        "chassis_vendor": "QEMU",
    })


def without_kernel_width(tree: Tree) -> Tree:
    """The tree without anything that shows the kernel's word size: no arch sysctl, no release, no module
    addresses, and a cpuinfo cut down to the lines a tool like py-cpuinfo keeps (no fpu_exception/wp/fdiv_bug)."""
    kept = tree.without("/proc/sys/kernel/arch", "/proc/sys/kernel/osrelease", "/proc/version", "/proc/modules")
    cpuinfo = str(kept["/proc/cpuinfo"])
    kept["/proc/cpuinfo"] = "".join(line + "\n" for line in cpuinfo.splitlines() if not line.startswith(("wp", "fpu", "fdiv_bug")))
    return kept


def i686_kernel(tree: Tree) -> Tree:
    """A 64-bit-capable x86 machine running a 32-bit kernel: lm still in the flags, fdiv_bug lines, a -686-pae release."""
    text = str(tree["/proc/cpuinfo"]).replace("fpu\t\t: yes\n", "fdiv_bug\t: no\nf00f_bug\t: no\ncoma_bug\t: no\nfpu\t\t: yes\n")
    return tree.without("/proc/sys/kernel/arch").with_files({
        "/proc/cpuinfo": text,
        "/proc/sys/kernel/osrelease": "4.19.0-6-686-pae\n",
        "/proc/version": "Linux version 4.19.0-6-686-pae (debian-kernel@lists.debian.org) #1 SMP Debian 4.19.67-2\n",
        "/proc/modules": "kvm_intel 212992 0 - Live 0xf8a5e000\nkvm 544768 1 kvm_intel, Live 0xf89d0000\n",
    })


# -- running checks on a tree -------------------------------------------------
def make_facts(tree, live=None, vm_dir: str = "/vms", errors: Optional[Mapping[str, str]] = None):
    """Facts of a tree (a Tree or a ready Host); `live` a FakeLiveSystem, or None for an offline tree."""
    from kvmready.facts import Facts

    host = tree.host(errors) if isinstance(tree, Tree) else tree
    return Facts(host, live_system=live, vm_dir=vm_dir)


def run_check(check_id: str, tree, target="workstation", live=None, vm_dir: str = "/vms", errors=None):
    """One registered check on a tree, as the runner runs it (severity included)."""
    from kvmready import runner
    from kvmready.checks import REGISTRY
    from kvmready.model import Target
    from kvmready.targets import policy

    facts = tree if tree.__class__.__name__ == "Facts" else make_facts(tree, live, vm_dir, errors)
    return runner.run_check(REGISTRY[check_id], facts, policy(Target(target)))
