"""x86 CPU vendors as CPUID's vendor string names them, and the hardware virtualization their CPUs
implement, which decides the KVM module, the firmware MSR and the firmware advice.

Sources: arch/x86/kernel/cpu/{intel,amd,hygon,centaur,zhaoxin}.c (the vendor strings); Centaur and Zhaoxin
CPUs implement VMX, which kvm_intel drives, and their IA32_FEATURE_CONTROL is set up as Intel's
(arch/x86/kernel/cpu/feat_ctl.c, called from centaur.c and zhaoxin.c since Linux 5.6); Hygon's Dhyana is
AMD's Zen, with SVM and VM_CR, driven by kvm_amd (arch/x86/kvm/svm/svm.c).
"""

from typing import Dict, Optional

VMX = "vmx"  # Intel VT-x
SVM = "svm"  # AMD-V

# vendor string, as /proc/cpuinfo readers see it (stripped: Zhaoxin's CPUID string is "  Shanghai  ")
# -> the virtualization extension of its CPUs
X86_VENDORS: Dict[str, str] = {
    "GenuineIntel": VMX,  # Intel
    "AuthenticAMD": SVM,  # AMD
    "HygonGenuine": SVM,  # Hygon
    "CentaurHauls": VMX,  # Centaur (VIA, early Zhaoxin)
    "Shanghai": VMX,  # Zhaoxin
}

KVM_MODULE_FOR = {VMX: "kvm_intel", SVM: "kvm_amd"}


def extension_of(vendor: Optional[str]) -> Optional[str]:
    """VMX or SVM for a known x86 vendor, else None."""
    return X86_VENDORS.get((vendor or "").strip())
