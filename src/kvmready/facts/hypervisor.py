"""Which hypervisor, if any, this host runs under (nested detection).

Several independent sources are read and each observation is kept as
evidence; the name comes from the most specific source that names one.
Without CPUID (a captured tree has none) the order follows systemd's
detect-virt: DMI vendors, Xen interfaces, s390 sysinfo, device tree,
clocksource, hypervisor-only PCI devices, then the bare `hypervisor` flag.
"""

from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

from kvmready.host import Host, ReadError

DMI_DIR = "/sys/class/dmi/id"
DMI_FIELDS = ("sys_vendor", "product_name", "bios_vendor", "board_vendor", "chassis_vendor")
SYS_HYPERVISOR_TYPE = "/sys/hypervisor/type"
SYS_HYPERVISOR_GUEST_TYPE = "/sys/hypervisor/guest_type"
PROC_XEN_CAPABILITIES = "/proc/xen/capabilities"
PROC_SYSINFO = "/proc/sysinfo"
DT_HYPERVISOR = "/proc/device-tree/hypervisor/compatible"
DT_COMPATIBLE = "/proc/device-tree/compatible"
CLOCKSOURCE = "/sys/devices/system/clocksource/clocksource0/current_clocksource"
AVAILABLE_CLOCKSOURCES = "/sys/devices/system/clocksource/clocksource0/available_clocksource"
CPUID_SOURCE = "cpuid 0x40000000"
PCI_DEVICES = "/proc/bus/pci/devices"
PPC_LPARCFG = "/proc/ppc64/lparcfg"

# Reads one source: its text, or None when it is absent or unreadable.
Reader = Callable[[str], Optional[str]]

# DMI substrings (matched case-insensitively against vendor/product fields) -> name.
DMI_VENDORS: Tuple[Tuple[str, str], ...] = (
    ("openstack", "kvm"),  # Nova's default driver is libvirt/KVM
    ("kvm", "kvm"),
    ("qemu", "qemu"),
    ("bochs", "qemu"),
    ("vmware", "vmware"),
    ("vmw", "vmware"),
    ("innotek gmbh", "virtualbox"),
    ("virtualbox", "virtualbox"),
    ("xen", "xen"),
    ("parallels", "parallels"),
    ("bhyve", "bhyve"),
    ("amazon ec2", "amazon"),
    ("google compute engine", "google"),
    ("apple virtualization", "apple"),
)
# CPUID leaf 0x40000000 signatures (EBX, ECX, EDX as text).
CPUID_SIGNATURES = {
    "KVMKVMKVM": "kvm",
    "Microsoft Hv": "hyperv",
    "VMwareVMware": "vmware",
    "XenVMMXenVMM": "xen",
    "TCGTCGTCGTCG": "qemu",
    "bhyve bhyve": "bhyve",
    "lrpepyh  vr": "parallels",
    "VBoxVBoxVBox": "virtualbox",
    "ACRNACRNACRN": "acrn",
    "QNXQVMBSQG": "qnx",
}
CLOCKSOURCES = {
    "kvm-clock": "kvm",
    "xen": "xen",
    "hyperv_clocksource_tsc_page": "hyperv",
    "hyperv_clocksource_msr": "hyperv",
}
# PCI vendor:device pairs that only exist as virtual hardware.
PCI_IDS = {
    "80eecafe": "virtualbox",  # VirtualBox guest service
    "80eebeef": "virtualbox",  # VirtualBox graphics adapter
    "15ad0405": "vmware",  # SVGA II
    "15ad0740": "vmware",  # VMCI
    "58530001": "xen",  # Xen platform device
    "14145353": "hyperv",  # Hyper-V video
}


class Clue(NamedTuple):
    source: str
    value: str
    suggests: Optional[str]  # normalised hypervisor name, or None when it says "bare metal"

    def to_dict(self) -> dict:
        return {"source": self.source, "value": self.value, "suggests": self.suggests}


class HypervisorInfo(NamedTuple):
    name: Optional[str]  # None: no hypervisor seen (bare metal)
    clues: Tuple[Clue, ...] = ()
    xen_role: Optional[str] = None  # "dom0" or "domU" under Xen
    unreadable: Tuple[str, ...] = ()  # sources that exist but could not be read
    xen_guest_type: Optional[str] = None  # "PV", "HVM" or "PVH" under Xen
    xen_guest_type_source: Optional[str] = None

    @property
    def paravirtual_xen(self) -> bool:
        """A Xen PV guest: its kernel never runs in VMX root, whatever flags it shows."""
        return self.name == "xen" and self.xen_guest_type == "PV"

    @property
    def is_guest(self) -> bool:
        return self.name is not None

    def evidence(self) -> Dict[str, Any]:
        data: Dict[str, Any] = {"hypervisor": self.name, "clues": [clue.to_dict() for clue in self.clues]}
        if self.xen_role:
            data["xen_role"] = self.xen_role
        if self.xen_guest_type:
            data["xen_guest_type"] = self.xen_guest_type
            data["xen_guest_type_source"] = self.xen_guest_type_source
        if self.unreadable:
            data["unreadable"] = list(self.unreadable)
        return data


def collect(host: Host, hypervisor_flag: bool, cpuid_signature: Optional[str] = None) -> HypervisorInfo:
    """`cpuid_signature` is the live CPUID leaf 0x40000000 text, when the machine itself was asked."""
    clues: List[Clue] = []
    if cpuid_signature:
        signature = cpuid_signature.strip("\x00 ")
        clues.append(Clue(CPUID_SOURCE, signature, CPUID_SIGNATURES.get(signature.strip(), "unknown")))
    unreadable: List[str] = []

    def read(path: str) -> Optional[str]:
        try:
            return host.read_text(path, 64 * 1024)
        except ReadError as exc:
            if "ENOENT" not in exc.reason and "ENOTDIR" not in exc.reason:
                unreadable.append(f"{path}: {exc.reason}")
            return None

    clues.extend(_dmi(read))
    xen_role = _xen(read, clues)
    clues.extend(_sysinfo(read))
    clues.extend(_device_tree(read))
    if read(PPC_LPARCFG) is not None:  # a logical partition; KVM guests on POWER were named by the device tree
        clues.append(Clue(PPC_LPARCFG, "present", "powervm"))
    clues.extend(_clocksources(read))
    clues.extend(_pci(read))
    if hypervisor_flag:
        clues.append(Clue("/proc/cpuinfo", "hypervisor flag", "unknown"))
    name = _decide(clues)
    guest_type, guest_type_source = _xen_guest_type(read, clues) if name == "xen" and xen_role != "dom0" else (None, None)
    return HypervisorInfo(name, tuple(clues), xen_role, tuple(unreadable), guest_type, guest_type_source)


def _xen_guest_type(read: Reader, clues: List[Clue]) -> Tuple[Optional[str], Optional[str]]:
    """PV, HVM or PVH: /sys/hypervisor/guest_type (Linux 4.15+), else inferred.

    HVM guests boot through emulated firmware and have DMI tables; a domU
    without any DMI clue is paravirtual (what virt-what calls xen-domU).
    """
    declared = (read(SYS_HYPERVISOR_GUEST_TYPE) or "").strip().upper()
    if declared in ("PV", "HVM", "PVH"):
        return declared, SYS_HYPERVISOR_GUEST_TYPE
    if not any(clue.source.startswith(DMI_DIR) for clue in clues):
        return "PV", "inferred: no DMI tables (HVM guests have them)"
    return "HVM", "inferred: DMI tables present"


def _decide(clues: List[Clue]) -> Optional[str]:
    named = [clue.suggests for clue in clues if clue.suggests not in (None, "unknown")]
    if any(clue.suggests is None and clue.source.startswith(DMI_DIR) for clue in clues) and not named:
        return None  # e.g. an EC2 .metal instance: the vendor's DMI, no hypervisor
    if named:
        # KVM-based clouds and QEMU: when KVM itself is visible, say kvm.
        if "qemu" in named and "kvm" in named:
            return "kvm"
        return named[0]
    if any(clue.suggests == "unknown" for clue in clues):
        return "unknown"
    return None


def _dmi(read: Reader) -> List[Clue]:
    clues = []
    values = {name: (read(f"{DMI_DIR}/{name}") or "").strip() for name in DMI_FIELDS}
    vendor, product = values["sys_vendor"].lower(), values["product_name"].lower()
    if vendor.startswith("amazon") and product.endswith(".metal"):
        return [Clue(f"{DMI_DIR}/product_name", values["product_name"], None)]
    if vendor.startswith("microsoft") and product == "virtual machine":
        return [Clue(f"{DMI_DIR}/sys_vendor", values["sys_vendor"], "hyperv")]
    for name in DMI_FIELDS:
        text = values[name].lower()
        for needle, hypervisor in DMI_VENDORS:
            if text and needle in text:
                clues.append(Clue(f"{DMI_DIR}/{name}", values[name], hypervisor))
                break
    return clues


def _xen(read: Reader, clues: List[Clue]) -> Optional[str]:
    sys_type = (read(SYS_HYPERVISOR_TYPE) or "").strip()
    if sys_type:
        clues.append(Clue(SYS_HYPERVISOR_TYPE, sys_type, sys_type.lower()))
    capabilities = read(PROC_XEN_CAPABILITIES)
    if capabilities is None:
        return "domU" if sys_type == "xen" else None
    role = "dom0" if "control_d" in capabilities else "domU"
    clues.append(Clue(PROC_XEN_CAPABILITIES, capabilities.strip() or "(empty)", "xen"))
    return role


def _sysinfo(read: Reader) -> List[Clue]:
    text = read(PROC_SYSINFO)
    if not text:
        return []
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().endswith("Control Program"):
            program = value.strip()
            lowered = program.lower()
            name = "zvm" if "z/vm" in lowered else "kvm" if "kvm" in lowered else "unknown"
            return [Clue(PROC_SYSINFO, program, name)]
    if "LPAR" in text:  # PR/SM partitions only: the machine's own firmware hypervisor
        return [Clue(PROC_SYSINFO, "LPAR", None)]
    return []


def _device_tree(read: Reader) -> List[Clue]:
    clues = []
    hypervisor = (read(DT_HYPERVISOR) or "").replace("\x00", " ").strip()
    if hypervisor:
        lowered = hypervisor.lower()
        name = "kvm" if "kvm" in lowered else "xen" if "xen" in lowered else "unknown"
        clues.append(Clue(DT_HYPERVISOR, hypervisor, name))
    compatible = (read(DT_COMPATIBLE) or "").replace("\x00", " ").strip()
    if "linux,dummy-virt" in compatible:
        clues.append(Clue(DT_COMPATIBLE, compatible, "qemu"))
    elif "qemu,pseries" in compatible:
        clues.append(Clue(DT_COMPATIBLE, compatible, "kvm"))
    return clues


def _clocksources(read: Reader) -> List[Clue]:
    current = (read(CLOCKSOURCE) or "").strip()
    if current in CLOCKSOURCES:
        return [Clue(CLOCKSOURCE, current, CLOCKSOURCES[current])]
    # A paravirtual clock the kernel registered but does not use still names the hypervisor.
    for name in (read(AVAILABLE_CLOCKSOURCES) or "").split():
        if name in CLOCKSOURCES:
            return [Clue(AVAILABLE_CLOCKSOURCES, name, CLOCKSOURCES[name])]
    return [Clue(CLOCKSOURCE, current, None)] if current else []


def _pci(read: Reader) -> List[Clue]:
    text = read(PCI_DEVICES) or ""
    for line in text.splitlines():
        fields = line.split()
        if len(fields) > 1 and fields[1].lower() in PCI_IDS:
            return [Clue(PCI_DEVICES, fields[1].lower(), PCI_IDS[fields[1].lower()])]
    return []
