"""The smoke guest on a software x86 CPU (QEMU's TCG), without KVM.

This checks the guest image itself, independently of the local KVM: booted
on QEMU's emulated PC it must write 'R', 'P', 'L', 'W', 'E' to the serial
port at 0x3f8 (a real 16550 there): 'L' only after entering long mode, 'W'
only after `lock cmpxchg16b` swapped its 16 bytes, 'E' after the loop.
Broken images are the controls: bad paging stops after 'R', 'P' with a
triple fault, a compare-exchange that must fail halts after 'L'.

A 64 KiB "BIOS" whose reset vector (0xfffffff0) far-jumps to 0000:1000 starts
the image from the reset state as kvmapi does.  Skipped without
qemu-system-x86_64 (Debian's qemu-system-x86; not part of the base image).
"""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from kvmready import kvmapi
from kvmready.kvmapi import GUEST_PHYS_ADDR, build_smoke_guest

QEMU = shutil.which("qemu-system-x86_64")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(QEMU is None, reason="qemu-system-x86_64 is not installed"),
]

RESET_JUMP = bytes.fromhex("EA00100000")  # jmp 0x0000:0x1000


def boot(tmp_path, image: bytes, expect: bytes, deadline_s: float = 30.0) -> bytes:
    """Boot `image` under TCG; return what reached the serial port once `expect` is
    there, QEMU exited (-no-reboot turns a triple fault into an exit) or time ran out."""
    bios = bytearray([0xF4]) * 0x10000
    bios[0xFFF0:0xFFF0 + len(RESET_JUMP)] = RESET_JUMP
    (tmp_path / "bios.bin").write_bytes(bios)
    (tmp_path / "guest.bin").write_bytes(image)
    serial = tmp_path / "serial.out"
    qemu = subprocess.Popen(
        [QEMU, "-accel", "tcg", "-M", "pc", "-m", "16", "-bios", str(tmp_path / "bios.bin"),
         "-device", f"loader,file={tmp_path / 'guest.bin'},addr={GUEST_PHYS_ADDR:#x},force-raw=on",
         "-display", "none", "-monitor", "none", "-serial", f"file:{serial}", "-no-reboot"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        end = time.monotonic() + deadline_s
        while time.monotonic() < end and qemu.poll() is None:
            if serial.exists() and serial.read_bytes() == expect:
                break
            time.sleep(0.05)
    finally:
        qemu.kill()
        qemu.wait()
    return serial.read_bytes() if serial.exists() else b""


def test_guest_walks_every_stage_on_an_emulated_cpu(tmp_path):
    assert boot(tmp_path, build_smoke_guest(), b"RPLWE") == b"RPLWE"


def test_control_a_compare_exchange_that_cannot_swap_halts_in_long_mode(tmp_path):
    image = bytearray(build_smoke_guest())
    offset = kvmapi.SCRATCH_ADDR - GUEST_PHYS_ADDR
    image[offset] = 7  # memory no longer holds the expected 0: cmpxchg16b clears ZF
    assert boot(tmp_path, bytes(image), b"RPLWE", deadline_s=10.0) == b"RPL"


def test_control_broken_paging_stops_after_protected_mode(tmp_path):
    image = bytearray(build_smoke_guest())
    offset = kvmapi.PD_ADDR - GUEST_PHYS_ADDR
    image[offset:offset + 8] = bytes(8)  # no 2 MiB page: the first fetch with paging faults
    assert boot(tmp_path, bytes(image), b"RPLWE", deadline_s=10.0) == b"RP"
