"""Firmware and kernel security state: UEFI Secure Boot and kernel lockdown.

Both decide whether out-of-tree modules (VMware's vmmon/vmnet, VirtualBox's
vboxdrv) load without being signed with an enrolled key.
"""

from typing import NamedTuple, Optional, Tuple

from kvmready.host import Host, ReadError

EFI_DIR = "/sys/firmware/efi"
EFIVARS = "/sys/firmware/efi/efivars"
GLOBAL_VARIABLE_GUID = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
SECURE_BOOT_VAR = f"{EFIVARS}/SecureBoot-{GLOBAL_VARIABLE_GUID}"
SETUP_MODE_VAR = f"{EFIVARS}/SetupMode-{GLOBAL_VARIABLE_GUID}"
SECURITYFS = "/sys/kernel/security"
LOCKDOWN = f"{SECURITYFS}/lockdown"


class FirmwareInfo(NamedTuple):
    uefi: Optional[bool]  # None: unknown
    secure_boot: Optional[bool]
    setup_mode: Optional[bool]
    secure_boot_source: Optional[str]
    secure_boot_error: Optional[str]
    lockdown: Optional[str]  # none, integrity, confidentiality
    lockdown_error: Optional[str]

    def secure_boot_evidence(self) -> dict:
        return {
            "uefi": self.uefi,
            "secure_boot": self.secure_boot,
            "setup_mode": self.setup_mode,
            "source": self.secure_boot_source,
            "error": self.secure_boot_error,
        }

    def lockdown_evidence(self) -> dict:
        return {"source": LOCKDOWN, "lockdown": self.lockdown, "error": self.lockdown_error}


def collect(host: Host) -> FirmwareInfo:
    # A captured tree without /sys/firmware says nothing about how the machine booted.
    uefi = host.exists(EFI_DIR) if host.exists("/sys/firmware") else None
    secure_boot = setup_mode = None
    source = error = None
    if uefi:
        secure_boot, error = _efi_bool(host, SECURE_BOOT_VAR)
        setup_mode, _ = _efi_bool(host, SETUP_MODE_VAR)
        source = SECURE_BOOT_VAR
    lockdown, lockdown_error = _lockdown(host)
    return FirmwareInfo(
        uefi=uefi,
        secure_boot=secure_boot,
        setup_mode=setup_mode,
        secure_boot_source=source,
        secure_boot_error=error,
        lockdown=lockdown,
        lockdown_error=lockdown_error,
    )


def _efi_bool(host: Host, path: str) -> Tuple[Optional[bool], Optional[str]]:
    """An efivarfs boolean: 4 bytes of attributes, then the value byte."""
    try:
        data = host.read_bytes(path, 64)
    except ReadError as exc:
        return None, exc.reason
    if len(data) < 5:
        return None, f"{len(data)} bytes; an EFI boolean variable has 5"
    return data[4] == 1, None


def _lockdown(host: Host) -> Tuple[Optional[str], Optional[str]]:
    try:
        text = host.read_value(LOCKDOWN)
    except ReadError as exc:
        if "ENOENT" in exc.reason and _populated(host, SECURITYFS):
            return "none", None  # securityfs is mounted and has no lockdown file: no lockdown LSM
        return None, exc.reason
    start, end = text.find("["), text.find("]")
    if start < 0 or end < start:
        return None, f"unexpected content {text[:60]!r}"
    return text[start + 1 : end], None


def _populated(host: Host, path: str) -> bool:
    try:
        return bool(host.list_dir(path))
    except ReadError:
        return False
