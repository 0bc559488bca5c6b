"""Which hypervisor, if any, this host runs under (nested detection), and who provides it.

Several independent sources are read and each observation is kept as
evidence; the name comes from the most specific source that names one.
Without CPUID (a captured tree has none) the order follows systemd's
detect-virt: DMI vendors, Xen interfaces, s390 sysinfo, device tree, then
what the kernel's cpuinfo shows (QEMU's CPU model names, the pSeries and
sun4v partition platforms, IBM Z, Xen PV's hidden flags), clocksource,
hypervisor-only PCI devices, then the bare `hypervisor` flag.

Some machines always run under a hypervisor whatever else they show: IBM Z
(PR/SM at least), sun4v SPARC (LDoms), POWER's pSeries platform (PowerVM or
QEMU/KVM).  "Bare metal" is said only when no source suggests a hypervisor.
"""

import re
from typing import TYPE_CHECKING, Any, Callable, Dict, List, NamedTuple, Optional, Tuple

from kvmready.host import Host, ReadError

if TYPE_CHECKING:
    from kvmready.facts.cpuinfo import CpuInfo

DMI_DIR = "/sys/class/dmi/id"
# The fields systemd-detect-virt compares (src/basic/virt.c: product_name, sys_vendor, board_vendor,
# bios_vendor, product_version), plus the chassis vendor, in the order clues are reported.
DMI_FIELDS = ("sys_vendor", "product_name", "product_version", "bios_vendor", "board_vendor", "chassis_vendor")
SYS_HYPERVISOR_TYPE = "/sys/hypervisor/type"
SYS_HYPERVISOR_GUEST_TYPE = "/sys/hypervisor/guest_type"
PROC_XEN_CAPABILITIES = "/proc/xen/capabilities"
PROC_SYSINFO = "/proc/sysinfo"
DEVICE_TREE = "/proc/device-tree"
DT_HYPERVISOR = "/proc/device-tree/hypervisor/compatible"
DT_COMPATIBLE = "/proc/device-tree/compatible"
CLOCKSOURCE = "/sys/devices/system/clocksource/clocksource0/current_clocksource"
AVAILABLE_CLOCKSOURCES = "/sys/devices/system/clocksource/clocksource0/available_clocksource"
CPUID_SOURCE = "cpuid 0x40000000"
PCI_DEVICES = "/proc/bus/pci/devices"
PPC_LPARCFG = "/proc/ppc64/lparcfg"
SYS_BUS_XEN = "/sys/bus/xen/drivers"
CPUINFO = "/proc/cpuinfo"

# Reads one source: its text, or None when it is absent or unreadable.
Reader = Callable[[str], Optional[str]]

# Host.hypervisor names what runs the VM (kvm, xen, vmware ...); `vendor` who provides it, in
# systemd-detect-virt's words where it has one (amazon, google, microsoft, oracle, apple), else
# virt-what's or the vendor's own short name (alibaba, nutanix, redhat, ovirt, openstack, ibm ...).
# DMI values (case-insensitive prefixes, as systemd's src/basic/virt.c compares them) -> (name, vendor).
# "unknown": certainly a VM (no such hardware exists), the hypervisor unnamed.
DMI_VENDORS: Tuple[Tuple[str, str, Optional[str]], ...] = (
    ("kvm", "kvm", None),  # systemd: KVM
    ("openstack", "kvm", "openstack"),  # systemd: OpenStack -> kvm (Nova's default driver is libvirt/KVM)
    ("kubevirt", "kvm", "kubevirt"),  # systemd: KubeVirt -> kvm
    ("amazon ec2", "kvm", "amazon"),  # systemd: Amazon EC2 -> amazon; Nitro is KVM-based (.metal: bare metal, below)
    ("google compute engine", "kvm", "google"),  # systemd: google; GCE runs on KVM
    ("alibaba cloud", "kvm", "alibaba"),  # virt-what 1.25: alibaba_cloud (its ECS test's CPUID says KVMKVMKVM)
    ("rhev hypervisor", "kvm", "redhat"),  # virt-what: rhev; ohai and salt: kvm
    ("ovirt", "kvm", "ovirt"),  # virt-what: ovirt; salt: kvm/oVirt
    ("cloudstack kvm hypervisor", "kvm", "cloudstack"),  # salt: kvm/cloudstack
    ("qemu", "qemu", None),  # systemd: QEMU
    ("bochs", "qemu", None),  # QEMU's default SeaBIOS strings (systemd: bochs)
    ("vmware", "vmware", "vmware"),  # systemd: VMware, VMW
    ("vmw", "vmware", "vmware"),
    ("innotek gmbh", "virtualbox", "oracle"),  # systemd: innotek GmbH, VirtualBox -> oracle
    ("virtualbox", "virtualbox", "oracle"),
    ("xen", "xen", None),  # systemd: Xen
    ("parallels", "parallels", "parallels"),  # systemd: Parallels
    ("bhyve", "bhyve", None),  # systemd: BHYVE
    ("hyper-v", "hyperv", "microsoft"),  # systemd: Hyper-V -> microsoft
    ("apple virtualization", "apple", "apple"),  # systemd: Apple Virtualization -> apple
    ("red hat", "unknown", "redhat"),  # virt-what: redhat (Red Hat makes no hardware: QEMU/KVM or Xen built by Red Hat)
)
# QEMU's machine types, as its SMBIOS tables name them (pc-i440fx-2.1, "RHEL 7.3.0 PC (i440FX + PIIX, 1996)").
QEMU_MACHINE_TYPE = r"^pc-(i440fx|q35)-|\((i440FX \+ PIIX|Q35 \+ ICH9), (1996|2009)\)"
# CPUID leaf 0x40000000 signatures (EBX, ECX, EDX as text) -> (name, vendor); systemd's table plus virt-what's
# LKVMLKVMLKVM (kvmtool, which runs only on KVM) and OpenBSDVMM58 (OpenBSD vmm).
CPUID_SIGNATURES: Dict[str, Tuple[str, Optional[str]]] = {
    "KVMKVMKVM": ("kvm", None),
    "Linux KVM Hv": ("kvm", None),  # KVM presenting Hyper-V enlightenments
    "Microsoft Hv": ("hyperv", "microsoft"),
    "VMwareVMware": ("vmware", "vmware"),
    "XenVMMXenVMM": ("xen", None),
    "TCGTCGTCGTCG": ("qemu", None),
    "bhyve bhyve": ("bhyve", None),
    "lrpepyh  vr": ("parallels", "parallels"),
    "VBoxVBoxVBox": ("virtualbox", "oracle"),
    "ACRNACRNACRN": ("acrn", None),
    "QNXQVMBSQG": ("qnx", None),
    "SRESRESRESRE": ("sre", None),
    "Apple VZ": ("apple", "apple"),
    "LKVMLKVMLKVM": ("kvm", "kvmtool"),
    "OpenBSDVMM58": ("vmm", "openbsd"),
}
CLOCKSOURCES = {
    "kvm-clock": "kvm",
    "xen": "xen",
    "hyperv_clocksource_tsc_page": "hyperv",
    "hyperv_clocksource_msr": "hyperv",
}
# PCI vendor:device pairs (or whole vendors) that only exist as virtual hardware.
PCI_IDS = {
    "80eecafe": "virtualbox",  # VirtualBox guest service
    "80eebeef": "virtualbox",  # VirtualBox graphics adapter
    "15ad0405": "vmware",  # SVGA II
    "15ad0740": "vmware",  # VMCI
    "58530001": "xen",  # Xen platform device
    "14145353": "hyperv",  # Hyper-V video
    "12341111": "qemu",  # QEMU/Bochs standard VGA
}
PCI_VENDORS = {
    "1b36": "qemu",  # Red Hat's vendor ID, used only for QEMU's own devices (PCIe host bridge 0008, root port 000c ...)
}
# QEMU's x86 CPU models (target/i386/cpu.c model_id): a guest whatever the accelerator. Real Intel brand
# strings always carry "(R)"; these never do.
QEMU_CPU_PREFIXES = ("QEMU Virtual CPU", "QEMU TCG CPU", "Intel Core Processor (", "Intel Xeon Processor (", "Intel Atom Processor (")
QEMU_CPU_MODELS = (
    "Intel Celeron_4x0 (Conroe/Merom Class Core 2)", "Intel Core 2 Duo P9xxx (Penryn Class Core 2)",
    "Intel Core i7 9xx (Nehalem Class Core i7)", "Intel Core i7 9xx (Nehalem Core i7, IBRS update)",
    "Westmere E56xx/L56xx/X56xx (Nehalem-C)", "Westmere E56xx/L56xx/X56xx (IBRS update)",
    "Intel Xeon E312xx (Sandy Bridge)", "Intel Xeon E312xx (Sandy Bridge, IBRS update)",
    "Intel Xeon E3-12xx v2 (Ivy Bridge)", "Intel Xeon E3-12xx v2 (Ivy Bridge, IBRS)",
    "AMD Opteron 240 (Gen 1 Class Opteron)", "AMD Opteron 22xx (Gen 2 Class Opteron)", "AMD Opteron 23xx (Gen 3 Class Opteron)",
    "AMD Opteron 62xx class CPU", "AMD Opteron 63xx class CPU", "AMD EPYC Processor", "AMD EPYC Processor (with IBPB)",
    "AMD EPYC-Rome Processor", "AMD EPYC-Milan Processor", "AMD EPYC-Genoa Processor", "Hygon Dhyana Processor",
)
# QEMU's kvm64/kvm32 models: named for KVM, the accelerator they were made for.
KVM_CPU_MODELS = ("Common KVM processor", "Common 32-bit KVM processor")
# Clues that only say "some partition firmware": the first other named hypervisor wins over them
# (QEMU's pseries machine has an lparcfg too).
WEAK = ("powervm",)

class Clue(NamedTuple):
    source: str
    value: str  # the line or value, as read
    suggests: Optional[str]  # normalised hypervisor name, "unknown", or None when it says "bare metal"
    vendor: Optional[str] = None  # who provides the VM, when this clue names it

    def to_dict(self) -> dict:
        return {"source": self.source, "value": self.value, "suggests": self.suggests, "vendor": self.vendor}


class HypervisorInfo(NamedTuple):
    name: Optional[str]  # None: no hypervisor seen (bare metal)
    clues: Tuple[Clue, ...] = ()
    xen_role: Optional[str] = None  # "dom0" or "domU" under Xen
    unreadable: Tuple[str, ...] = ()  # sources that exist but could not be read
    xen_guest_type: Optional[str] = None  # "PV", "HVM" or "PVH" under Xen
    xen_guest_type_source: Optional[str] = None
    vendor: Optional[str] = None  # who provides the VM (amazon, google, nutanix ...), when a clue names it
    # False: neither DMI nor a device tree could be listed, where a VM's platform names its hypervisor
    platform_seen: bool = True

    @property
    def paravirtual_xen(self) -> bool:
        """A Xen PV guest: its kernel never runs in VMX root, whatever flags it shows."""
        return self.name == "xen" and self.xen_guest_type == "PV"

    @property
    def is_guest(self) -> bool:
        return self.name is not None

    @property
    def bare_metal_shown(self) -> bool:
        """Positive evidence of no hypervisor (an EC2 .metal DMI, a PowerNV platform line); a clocksource of tsc is
        not, as VMs use it too."""
        return any(clue.suggests is None and clue.source != CLOCKSOURCE for clue in self.clues)

    def evidence(self) -> Dict[str, Any]:
        data: Dict[str, Any] = {"hypervisor": self.name, "vendor": self.vendor, "clues": [clue.to_dict() for clue in self.clues]}
        if self.xen_role:
            data["xen_role"] = self.xen_role
        if self.xen_guest_type:
            data["xen_guest_type"] = self.xen_guest_type
            data["xen_guest_type_source"] = self.xen_guest_type_source
        if self.unreadable:
            data["unreadable"] = list(self.unreadable)
        if not self.platform_seen:
            data["platform_seen"] = False
        return data


def collect(host: Host, hypervisor_flag: bool, cpuid_signature: Optional[str] = None, cpu: Optional["CpuInfo"] = None) -> HypervisorInfo:
    """`cpuid_signature` is the live CPUID leaf 0x40000000 text, when the machine itself was asked;
    `cpu` the parsed cpuinfo, whose model names and platform lines can name the hypervisor."""
    clues: List[Clue] = []
    if cpuid_signature:
        signature = cpuid_signature.strip("\x00 ")
        named, maker = CPUID_SIGNATURES.get(signature.strip(), ("unknown", None))
        clues.append(Clue(CPUID_SOURCE, signature, named, maker))
    unreadable: List[str] = []

    def read(path: str) -> Optional[str]:
        try:
            return host.read_text(path, 64 * 1024)
        except ReadError as exc:
            if "ENOENT" not in exc.reason and "ENOTDIR" not in exc.reason:
                unreadable.append(f"{path}: {exc.reason}")
            return None

    def listing(path: str) -> Optional[List[str]]:
        try:
            return host.list_dir(path)
        except ReadError:
            return None

    clues.extend(_dmi(read))
    xen_role = _xen(read, listing, clues)
    clues.extend(_sysinfo(read))
    clues.extend(_device_tree(read, listing))
    if read(PPC_LPARCFG) is not None:  # a logical partition of PowerVM, unless a stronger clue names QEMU/KVM
        clues.append(Clue(PPC_LPARCFG, "present", "powervm", "ibm"))
    if cpu is not None and cpu.error is None:
        clues.extend(_cpuinfo(cpu))
    clues.extend(_clocksources(read))
    clues.extend(_pci(read))
    if hypervisor_flag:
        clues.append(Clue(CPUINFO, "hypervisor flag", "unknown"))
    name = _decide(clues)
    vendor = _vendor(clues, name)
    guest_type, guest_type_source = _xen_guest_type(read, clues) if name == "xen" and xen_role != "dom0" else (None, None)
    # A directory listing, or a DMI value read (a snapshot from before the listings were recorded has only those).
    platform_seen = (listing(DMI_DIR) is not None or listing(DEVICE_TREE) is not None
                     or read(f"{DMI_DIR}/sys_vendor") is not None)
    return HypervisorInfo(name, tuple(clues), xen_role, tuple(unreadable), guest_type, guest_type_source, vendor, platform_seen)


def _xen_guest_type(read: Reader, clues: List[Clue]) -> Tuple[Optional[str], Optional[str]]:
    """PV, HVM or PVH: /sys/hypervisor/guest_type (Linux 4.15+), else inferred.

    HVM guests boot through emulated firmware and have DMI tables; a domU
    without any DMI clue is paravirtual (what virt-what calls xen-domU).
    """
    declared = (read(SYS_HYPERVISOR_GUEST_TYPE) or "").strip().upper()
    if declared in ("PV", "HVM", "PVH"):
        return declared, SYS_HYPERVISOR_GUEST_TYPE
    if any(clue.source == CPUINFO and clue.value.startswith(XEN_PV_FLAGS) for clue in clues):
        return "PV", "inferred: the flags line lacks pse and pge, which Xen hides from paravirtual guests"
    if not any(clue.source.startswith(DMI_DIR) for clue in clues):
        return "PV", "inferred: no DMI tables (HVM guests have them)"
    return "HVM", "inferred: DMI tables present"


def _decide(clues: List[Clue]) -> Optional[str]:
    named = [clue.suggests for clue in clues if clue.suggests not in (None, "unknown")]
    if any(clue.suggests is None and clue.source.startswith(DMI_DIR) for clue in clues) and not named:
        return None  # e.g. an EC2 .metal instance: the vendor's DMI, no hypervisor
    strong = [name for name in named if name not in WEAK]
    if strong:
        # KVM-based clouds and QEMU: when KVM itself is visible, say kvm.
        if "qemu" in strong and "kvm" in strong:
            return "kvm"
        return strong[0]
    if named:
        return named[0]
    if any(clue.suggests == "unknown" for clue in clues):
        return "unknown"
    return None


# Hypervisors only one vendor makes: naming the hypervisor names the vendor (systemd answers
# microsoft for Hyper-V and oracle for VirtualBox).
SOLE_VENDORS = {"hyperv": "microsoft", "virtualbox": "oracle", "vmware": "vmware", "parallels": "parallels",
                "apple": "apple", "powervm": "ibm", "zvm": "ibm", "lpar": "ibm"}


def _vendor(clues: List[Clue], name: Optional[str]) -> Optional[str]:
    """The first vendor a clue names, when there is a hypervisor at all; else the hypervisor's sole maker."""
    if name is None:
        return None
    for clue in clues:
        if clue.vendor and clue.suggests in (name, "unknown", "qemu" if name == "kvm" else name):
            return clue.vendor
    return SOLE_VENDORS.get(name)


def _dmi(read: Reader) -> List[Clue]:
    clues = []
    values = {name: (read(f"{DMI_DIR}/{name}") or "").strip() for name in DMI_FIELDS}
    vendor, product = values["sys_vendor"].lower(), values["product_name"].lower()
    if vendor.startswith("amazon") and re.search(r"\.metal($|-)", product):  # systemd: .metal is bare metal
        return [Clue(f"{DMI_DIR}/product_name", values["product_name"], None, None)]
    if vendor.startswith("microsoft") and product == "virtual machine":
        return [Clue(f"{DMI_DIR}/sys_vendor", values["sys_vendor"], "hyperv", "microsoft")]
    if vendor.startswith("nutanix") and product.startswith("ahv"):  # Nutanix also sells hardware: AHV names the VM
        clues.append(Clue(f"{DMI_DIR}/product_name", values["product_name"], "kvm", "nutanix"))
    if vendor.startswith("hitachi") and "lpar" in product:  # virt-what: virtage
        clues.append(Clue(f"{DMI_DIR}/product_name", values["product_name"], "virtage", "hitachi"))
    for name in DMI_FIELDS:
        text = values[name].lower()
        if not text:
            continue
        if name == "product_version" and text.endswith(".amazon"):  # EC2's Xen instances: 4.2.amazon
            clues.append(Clue(f"{DMI_DIR}/{name}", values[name], "xen", "amazon"))
            continue
        if name in ("product_name", "product_version") and re.search(QEMU_MACHINE_TYPE, values[name]):
            clues.append(Clue(f"{DMI_DIR}/{name}", values[name], "qemu", None))
            continue
        for prefix, hypervisor, maker in DMI_VENDORS:
            if text.startswith(prefix):
                clues.append(Clue(f"{DMI_DIR}/{name}", values[name], hypervisor, maker))
                break
    return clues


def _xen(read: Reader, listing: Callable[[str], Optional[List[str]]], clues: List[Clue]) -> Optional[str]:
    sys_type = (read(SYS_HYPERVISOR_TYPE) or "").strip()
    if sys_type:
        clues.append(Clue(SYS_HYPERVISOR_TYPE, sys_type, sys_type.lower()))
    capabilities = read(PROC_XEN_CAPABILITIES)
    if capabilities is None:
        if sys_type == "xen":
            return "domU"
        drivers = listing(SYS_BUS_XEN)
        if drivers:  # the xenbus exists only when the kernel runs on Xen (drivers/xen/xenbus)
            clues.append(Clue(SYS_BUS_XEN, " ".join(drivers[:8]), "xen"))
        return None
    role = "dom0" if "control_d" in capabilities else "domU"
    clues.append(Clue(PROC_XEN_CAPABILITIES, capabilities.strip() or "(empty)", "xen"))
    return role


def _sysinfo(read: Reader) -> List[Clue]:
    """IBM Z: the innermost level (VM00) names z/VM or KVM; otherwise the LPAR itself runs under PR/SM.

    Linux on IBM Z never runs without a hypervisor: an LPAR is a partition of PR/SM, the machine's
    firmware hypervisor (lscpu: `Hypervisor: PR/SM`, virt-what: ibm_systemz-lpar). systemd has no name
    for it; kvmready says `lpar`.
    """
    text = read(PROC_SYSINFO)
    if not text:
        return []
    lpar = None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().endswith("Control Program"):
            program = value.strip()
            lowered = program.lower()
            if "z/vm" in lowered:
                return [Clue(PROC_SYSINFO, program, "zvm", "ibm")]
            return [Clue(PROC_SYSINFO, program, "kvm" if "kvm" in lowered else "unknown", None)]
        if lpar is None and key.startswith("LPAR"):
            lpar = " ".join(line.split())
    if lpar:
        return [Clue(PROC_SYSINFO, lpar, "lpar", "ibm")]
    return []


def _device_tree(read: Reader, listing: Callable[[str], Optional[List[str]]]) -> List[Clue]:
    """systemd's detect_vm_device_tree(): the hypervisor node, a fw-cfg node, PowerVM's partition properties."""
    clues = []
    hypervisor = (read(DT_HYPERVISOR) or "").replace("\x00", " ").strip()
    if hypervisor:
        lowered = hypervisor.lower()
        if "linux,kvm" in lowered:
            clues.append(Clue(DT_HYPERVISOR, hypervisor, "kvm"))
        elif "xen" in lowered:
            clues.append(Clue(DT_HYPERVISOR, hypervisor, "xen"))
        elif "vmware" in lowered:
            clues.append(Clue(DT_HYPERVISOR, hypervisor, "vmware", "vmware"))
        else:
            clues.append(Clue(DT_HYPERVISOR, hypervisor, "unknown"))
    compatible = (read(DT_COMPATIBLE) or "").replace("\x00", " ").strip()
    entries = listing(DEVICE_TREE) or []
    fw_cfg = next((entry for entry in entries if entry.startswith("fw-cfg")), None)
    if fw_cfg:  # QEMU's firmware configuration device
        clues.append(Clue(f"{DEVICE_TREE}/{fw_cfg}", "present", "qemu"))
    if "linux,dummy-virt" in compatible and not fw_cfg and entries:
        # QEMU's virt machine always has a fw-cfg node; kvmtool's has none and runs only on KVM (virt-what: lkvm).
        clues.append(Clue(DT_COMPATIBLE, compatible + " (no fw-cfg node)", "kvm", "kvmtool"))
    elif "qemu,pseries" in compatible:
        clues.append(Clue(DT_COMPATIBLE, compatible, "qemu"))
    if "ibm,partition-name" in entries and "hmc-managed?" in entries and "qemu,graphic-width" not in (listing(f"{DEVICE_TREE}/chosen") or []):
        clues.append(Clue(f"{DEVICE_TREE}/ibm,partition-name", "present, with hmc-managed?", "powervm", "ibm"))
    return clues


XEN_PV_FLAGS = "flags without pse and pge"


def _cpuinfo(cpu: "CpuInfo") -> List[Clue]:
    """What the kernel's cpuinfo says about the machine under it: virtual CPU models, partition platforms."""
    clues = []
    model = cpu.value("model name") or ""
    if model.startswith(KVM_CPU_MODELS):
        clues.append(Clue(CPUINFO, cpu.line("model name") or model, "kvm"))
    elif model.startswith(QEMU_CPU_PREFIXES) or model in QEMU_CPU_MODELS:
        clues.append(Clue(CPUINFO, cpu.line("model name") or model, "qemu"))
    vendor_id = cpu.value("vendor_id") or ""
    if vendor_id == "User Mode Linux":  # systemd: uml
        clues.append(Clue(CPUINFO, cpu.line("vendor_id") or vendor_id, "uml"))
    elif vendor_id == "PowerVM Lx86":  # x86 binaries translated on a POWER partition (virt-what: powervm_lx86)
        clues.append(Clue(CPUINFO, cpu.line("vendor_id") or vendor_id, "powervm", "ibm"))
    family = cpu.arch.family
    if family == "x86" and cpu.flag_lines and "sse2" in cpu.flags and not {"pse", "pge"} & cpu.flags:
        # Every SSE2 CPU has PSE and PGE; Xen hides both from paravirtual guests, dom0 included
        # (xen/include/public/arch-x86/cpufeatureset.h marks them HVM-only).
        clues.append(Clue(CPUINFO, f"{XEN_PV_FLAGS} (every SSE2 CPU has both): {cpu.line('flags') or ''}", "xen"))
    if family == "powerpc":
        clues.extend(_powerpc(cpu))
    elif family == "sparc" and cpu.value("type") == "sun4v":
        # sun4v machines run Linux only on the sun4v hypervisor, in a logical domain (LDoms).
        clues.append(Clue(CPUINFO, cpu.line("type") or "type: sun4v", "ldoms"))
    elif family == "s390":
        clues.extend(_ibm_z(cpu))
    return clues


# IBM machine types that could still run an operating system without PR/SM ("basic mode"): S/390 G5/G6
# (9672), Multiprise 3000 (7060), z900 (2064) and z800 (2066).  From the z990 (2084) on every image is an
# LPAR at least.
BASIC_MODE_MACHINES = ("9672", "7060", "2064", "2066", "2003", "9021", "9121", "9221")
S390_MACHINE = r"machine = ([0-9A-Fa-f]{4})"


def _ibm_z(cpu: "CpuInfo") -> List[Clue]:
    line = cpu.line("processor 0") or next((value for key, value in cpu.first_lines.items() if key.startswith("processor ")), "")
    match = re.search(S390_MACHINE, line)
    if match and match.group(1) in BASIC_MODE_MACHINES:
        return []  # basic mode was possible: nothing here tells (host.hypervisor says so)
    machine = f" (machine {match.group(1)})" if match else ""
    return [Clue(CPUINFO, (cpu.line("vendor_id") or "vendor_id: IBM/S390") + machine
                 + ": Linux on IBM Z from the z990 on always runs in an LPAR, under z/VM or under KVM", "unknown")]


def _powerpc(cpu: "CpuInfo") -> List[Clue]:
    platform = cpu.value("platform") or ""
    for key in ("machine", "model"):
        if "(emulated by qemu)" in (cpu.value(key) or ""):
            return [Clue(CPUINFO, cpu.line(key) or "", "qemu")]
    if platform == "pSeries":  # the PAPR platform: PowerVM's partitions (QEMU's pseries machine says so above)
        return [Clue(CPUINFO, cpu.line("platform") or platform, "powervm", "ibm")]
    if platform == "PowerNV":  # OPAL firmware, Linux itself in hypervisor mode: no hypervisor beneath
        return [Clue(CPUINFO, cpu.line("platform") or platform, None)]
    return []


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
        if len(fields) < 2:
            continue
        ident = fields[1].lower()
        name = PCI_IDS.get(ident) or PCI_VENDORS.get(ident[:4])
        if name:
            return [Clue(PCI_DEVICES, ident, name)]
    return []
