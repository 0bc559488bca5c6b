"""Unit tests for kvmready.kvmapi that never touch /dev/kvm.

The ioctl seam (kvmapi._raw_ioctl) is replaced by FakeKvm, which plays the
kernel: the "vCPU fd" it hands out is a temporary file, so the real mmap code
maps it and KVM_RUN "exits" are written into that file.  The smoke guest's
memory image (code, GDT, page tables) is checked by decoding it here, by the
x86 layouts, independently of the code that builds it.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import shutil
import signal
import struct
import subprocess
import tempfile
import threading
import time

import pytest

from kvmready import kvmapi
from kvmready.kvmabi import KVM_API_VERSION, KVM_DEVICE
from kvmready.kvmapi import (
    CAPABILITIES,
    STAGES,
    Capability,
    GuestRun,
    KvmError,
    KvmHandle,
    KvmVm,
    build_smoke_guest,
)

RUN_SIZE = 3 * 4096
IO_DATA_OFFSET = 4096
R, P, L, W = (byte for _stage, byte in STAGES)
E = kvmapi.LOOP_DONE_BYTE
FULL_STAGES = ("real", "protected", "long", "workload")
# What KVM_GET_SUPPORTED_CPUID answers in the fake: leaf 0x80000001 with EDX.LM (bit 29).
FAKE_CPUID = [(0x0, 0, 0, 0x10, 0, 0, 0), (0x80000001, 0, 0, 0, 0, 0, 1 << 29)]


# --- helpers ---------------------------------------------------------------
def make_run_buffer(reason: int, size: int = RUN_SIZE) -> bytearray:
    buf = bytearray(size)
    struct.pack_into("=I", buf, 8, reason)
    return buf


def io_exit(value: int = R, port: int = 0x3F8, direction: int = 1,
            size: int = 1, count: int = 1, data_offset: int = IO_DATA_OFFSET) -> bytearray:
    buf = make_run_buffer(2)
    struct.pack_into("=BBHIQ", buf, 32, direction, size, port, count, data_offset)
    if data_offset < len(buf):
        buf[data_offset] = value
    return buf


HLT = 5


def full_run() -> list:
    """The exits of a guest that walks every stage, ends its loop and halts."""
    return [io_exit(R), io_exit(P), io_exit(L), io_exit(W), io_exit(E), make_run_buffer(HLT)]


def cpuid2(entries) -> bytes:
    """A struct kvm_cpuid2 holding `entries` (function, index, flags, eax, ebx, ecx, edx)."""
    return struct.pack("=II", len(entries), 0) + b"".join(
        struct.pack("=7I3I", *entry, 0, 0, 0) for entry in entries)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class Hang:
    """A scripted KVM_RUN that blocks until a signal handler raises."""


class FakeKvm:
    """Stands in for the kernel behind kvmapi._raw_ioctl."""

    def __init__(self, tmp_path, exits, fail_on: int | None = None, cpuid=FAKE_CPUID,
                 fail_errno: int = errno.EIO):
        self.exits = list(exits)  # bytearray kvm_run images, Hang() or an errno
        self.fail_on = fail_on
        self.fail_errno = fail_errno
        self.cpuid = list(cpuid)
        self.calls: list[int] = []
        self.regions: list[tuple] = []
        self.memory: bytes | None = None  # guest RAM as KVM_SET_USER_MEMORY_REGION saw it
        self.cpuid_set: bytes | None = None
        self.cpuid_capacities: list[int] = []
        self.sregs_set: bytes | None = None
        self.regs_set: tuple | None = None
        self.vcpu_ids: list[int] = []
        self.vcpu_path = tmp_path / "vcpu"
        self.vcpu_fd = -1

    def __call__(self, fd, request, arg=0):
        self.calls.append(request)
        if request == self.fail_on:
            raise OSError(self.fail_errno, os.strerror(self.fail_errno))
        handler = {
            kvmapi.KVM_GET_SUPPORTED_CPUID: self._get_supported_cpuid,
            kvmapi.KVM_SET_CPUID2: self._set_cpuid2,
            kvmapi.KVM_SET_USER_MEMORY_REGION: self._set_region,
            kvmapi.KVM_CREATE_VCPU: self._create_vcpu,
            kvmapi.KVM_GET_SREGS: self._get_sregs,
            kvmapi.KVM_SET_SREGS: self._set_sregs,
            kvmapi.KVM_SET_REGS: self._set_regs,
            kvmapi.KVM_RUN: self._run,
        }.get(request)
        if handler is None:
            return 0
        return handler(fd, arg)

    def _get_supported_cpuid(self, fd, arg):
        (capacity, _padding) = struct.unpack_from("=II", arg)
        self.cpuid_capacities.append(capacity)
        if capacity < len(self.cpuid):
            raise OSError(errno.E2BIG, os.strerror(errno.E2BIG))
        image = cpuid2(self.cpuid)
        arg[:len(image)] = image
        return 0

    def _set_cpuid2(self, fd, arg):
        self.cpuid_set = bytes(arg)
        return 0

    def _set_region(self, fd, arg):
        region = struct.unpack(kvmapi.MEMORY_REGION_FORMAT, arg)
        self.regions.append(region)
        _slot, _flags, _gpa, size, address = region
        if size:
            import ctypes

            self.memory = ctypes.string_at(address, size)
        return 0

    def _create_vcpu(self, fd, arg):
        self.vcpu_ids.append(arg)
        self.vcpu_fd = os.open(self.vcpu_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        os.ftruncate(self.vcpu_fd, RUN_SIZE)
        return self.vcpu_fd

    def _get_sregs(self, fd, arg):
        # x86 reset state: CS selector 0xf000, base 0xffff0000, limit 0xffff
        struct.pack_into(kvmapi.SEGMENT_HEAD_FORMAT, arg, 0, 0xFFFF0000, 0xFFFF, 0xF000)
        return 0

    def _set_sregs(self, fd, arg):
        self.sregs_set = bytes(arg)
        return 0

    def _set_regs(self, fd, arg):
        self.regs_set = struct.unpack(kvmapi.REGS_FORMAT, arg)
        return 0

    def _run(self, fd, arg):
        step = self.exits.pop(0) if self.exits else make_run_buffer(5)
        if isinstance(step, Hang):
            read_end, write_end = os.pipe()
            try:
                os.read(read_end, 1)  # blocks; PEP 475 retries unless a handler raises
            finally:
                os.close(read_end)
                os.close(write_end)
            raise AssertionError("unreachable: nothing ever writes to the pipe")
        if isinstance(step, int):
            raise OSError(step, os.strerror(step))
        os.pwrite(fd, bytes(step), 0)
        return 0


@pytest.fixture
def fake_vm(tmp_path, monkeypatch):
    """A KvmVm on a harmless fd (/dev/null) whose ioctls go to a FakeKvm."""
    vms = []

    def build(exits=(), fail_on=None, **options):
        fake = FakeKvm(tmp_path, exits, fail_on, **options)
        monkeypatch.setattr(kvmapi, "_raw_ioctl", fake)
        handle = KvmHandle(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
        vm = KvmVm(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC), RUN_SIZE, handle=handle)
        vms.append((vm, handle))
        return vm, fake

    yield build
    for vm, handle in vms:
        vm.close()
        handle.close()


# --- ioctl numbers and struct layouts ------------------------------------------------
@pytest.mark.parametrize("name, value", [
    ("KVM_GET_API_VERSION", 0xAE00),
    ("KVM_CREATE_VM", 0xAE01),
    ("KVM_CHECK_EXTENSION", 0xAE03),
    ("KVM_GET_VCPU_MMAP_SIZE", 0xAE04),
    ("KVM_GET_SUPPORTED_CPUID", 0xC008AE05),
    ("KVM_CREATE_VCPU", 0xAE41),
    ("KVM_SET_USER_MEMORY_REGION", 0x4020AE46),
    ("KVM_RUN", 0xAE80),
    ("KVM_GET_REGS", 0x8090AE81),
    ("KVM_SET_REGS", 0x4090AE82),
    ("KVM_GET_SREGS", 0x8138AE83),
    ("KVM_SET_SREGS", 0x4138AE84),
    ("KVM_SET_CPUID2", 0x4008AE90),
])
def test_ioctl_numbers_match_the_uapi_values(name, value):
    assert getattr(kvmapi, name) == value


def test_ioc_encodes_direction_size_type_and_number():
    assert kvmapi._ioc(kvmapi._IOC_READ | kvmapi._IOC_WRITE, 0x05, 8) == 0xC008AE05


@pytest.mark.parametrize("fmt, size", [
    ("MEMORY_REGION_FORMAT", 32),
    ("REGS_FORMAT", 144),
    ("SEGMENT_FORMAT", 24),
    ("DTABLE_FORMAT", 16),
    ("SREGS_FORMAT", 312),
    ("RUN_IO_FORMAT", 16),
    ("CPUID2_HEADER_FORMAT", 8),
    ("CPUID_ENTRY2_FORMAT", 40),
])
def test_struct_sizes(fmt, size):
    assert struct.calcsize(getattr(kvmapi, fmt)) == size


def test_kvm_run_offsets():
    assert kvmapi.RUN_IMMEDIATE_EXIT_OFFSET == 1
    assert kvmapi.RUN_EXIT_REASON_OFFSET == 8
    assert kvmapi.RUN_UNION_OFFSET == 32


def test_constants():
    assert KVM_API_VERSION == 12
    assert KVM_DEVICE == "/dev/kvm"
    assert STAGES == (("real", ord("R")), ("protected", ord("P")), ("long", ord("L")), ("workload", ord("W")))
    assert kvmapi.SMOKE_PORT == 0x3F8 and kvmapi.SMOKE_BYTE == kvmapi.LOOP_DONE_BYTE == ord("E")
    assert kvmapi.LOOP_INSTRUCTIONS == 2 * kvmapi.LOOP_ITERATIONS


# --- the smoke guest's memory image, decoded independently ---------------------------
IMAGE = build_smoke_guest()
BASE = kvmapi.GUEST_PHYS_ADDR


def at(address: int, fmt: str):
    return struct.unpack_from(fmt, IMAGE, address - BASE)


def decode_descriptor(value: int) -> dict:
    """Intel SDM vol. 3A 3.4.5: the fields of an 8-byte code/data segment descriptor."""
    return {
        "limit": (value & 0xFFFF) | ((value >> 48) & 0xF) << 16,
        "base": ((value >> 16) & 0xFFFFFF) | ((value >> 56) & 0xFF) << 24,
        "type": (value >> 40) & 0xF, "s": (value >> 44) & 1, "dpl": (value >> 45) & 3,
        "p": (value >> 47) & 1, "avl": (value >> 52) & 1, "l": (value >> 53) & 1,
        "db": (value >> 54) & 1, "g": (value >> 55) & 1,
    }


def test_image_fills_exactly_the_guest_memory_and_the_identity_map_covers_it():
    assert len(IMAGE) == kvmapi.GUEST_MEMORY_SIZE == 4 * 4096
    assert BASE == 0x1000
    assert BASE + len(IMAGE) <= 2 << 20  # inside the one 2 MiB page at 0
    assert build_smoke_guest() == IMAGE  # deterministic


def test_gdt_descriptors_decode_to_flat_code32_data_and_code64():
    limit, base = at(kvmapi.GDTR_ADDR, "<HI")
    assert base == kvmapi.GDT_ADDR and base % 8 == 0 and limit == 4 * 8 - 1
    null, code32, data, code64 = at(base, "<4Q")
    assert null == 0
    flat = {"limit": 0xFFFFF, "base": 0, "s": 1, "dpl": 0, "p": 1, "avl": 0, "g": 1}
    # type 0xB: code, execute/read, accessed; 0x3: data, read/write, accessed
    assert decode_descriptor(code32) == {**flat, "type": 0xB, "l": 0, "db": 1}
    assert decode_descriptor(data) == {**flat, "type": 0x3, "l": 0, "db": 1}
    assert decode_descriptor(code64) == {**flat, "type": 0xB, "l": 1, "db": 0}
    # The well-known encodings, as a second opinion on the bit positions.
    assert (code32, data, code64) == (0x00CF9B000000FFFF, 0x00CF93000000FFFF, 0x00AF9B000000FFFF)
    assert (kvmapi.CODE32_SELECTOR, kvmapi.DATA_SELECTOR, kvmapi.CODE64_SELECTOR) == (0x08, 0x10, 0x18)


def test_the_idt_is_null_so_any_exception_triple_faults():
    assert at(kvmapi.NULL_IDTR_ADDR, "<HI") == (0, 0)


def walk(linear: int) -> int:
    """Translate with 4-level paging (SDM vol. 3A 4.5) through the image's tables."""
    table = kvmapi.PML4_ADDR
    for level, shift in (("PML4E", 39), ("PDPTE", 30), ("PDE", 21)):
        (entry,) = at(table + 8 * ((linear >> shift) & 0x1FF), "<Q")
        assert entry & 1, f"{level} for {linear:#x} not present"
        assert entry & 2, f"{level} for {linear:#x} not writable"
        assert not entry & (1 << 63) and (entry >> 52) & 0x7FF == 0, f"{level}: reserved/NX bits"
        if level == "PDE":
            assert entry & (1 << 7), "the PDE must map a 2 MiB page (PS)"
            assert (entry >> 13) & 0xFF == 0, "PDE bits 20:13 are reserved for a 2 MiB page"
            return (entry & 0x000FFFFFFFE00000) | (linear & 0x1FFFFF)
        assert not entry & (1 << 7), f"PS must be clear in a {level}"
        table = entry & 0x000FFFFFFFFFF000
        assert BASE <= table < BASE + len(IMAGE), f"{level} points outside guest memory"


def test_page_tables_identity_map_every_byte_of_guest_memory():
    assert kvmapi.PML4_ADDR % 4096 == 0
    for linear in range(BASE, BASE + len(IMAGE), 512):
        assert walk(linear) == linear
    assert walk(BASE + len(IMAGE) - 1) == BASE + len(IMAGE) - 1
    # one entry per table, nothing else mapped
    for table in (kvmapi.PML4_ADDR, kvmapi.PDPT_ADDR, kvmapi.PD_ADDR):
        assert IMAGE[table - BASE + 8:table - BASE + 4096] == bytes(4096 - 8)


def test_control_register_msr_and_cpuid_bits():
    assert kvmapi.CR0_PE == 0x1 and kvmapi.CR0_PG == 0x80000000 and kvmapi.CR4_PAE == 0x20
    assert kvmapi.MSR_EFER == 0xC0000080 and kvmapi.EFER_LME == 0x100
    assert kvmapi.CPUID_EXT_FEATURES == 0x80000001 and kvmapi.CPUID_EDX_LM == 0x20000000


def test_real_mode_code_bytes():
    code = kvmapi._real_mode_code()
    assert IMAGE[:len(code)] == code
    assert code == bytes.fromhex(
        "FA"            # cli
        "BAF803"        # mov dx, 0x3f8
        "B052"          # mov al, 'R'
        "EE"            # out dx, al
        "660F011E2811"  # o32 lidt [0x1128]
        "660F01162011"  # o32 lgdt [0x1120]
        "0F20C0"        # mov eax, cr0
        "0C01"          # or al, 1 (PE)
        "0F22C0"        # mov cr0, eax
        "EA40100800")   # jmp 0x08:0x1040


def test_protected_mode_code_bytes():
    code = kvmapi._protected_mode_code()
    offset = kvmapi.PROTECTED_ENTRY - BASE
    assert IMAGE[offset:offset + len(code)] == code
    assert code == bytes.fromhex(
        "66B81000"            # mov ax, 0x10
        "8ED8" "8EC0" "8EE0" "8EE8" "8ED0"  # mov ds/es/fs/gs/ss, ax
        "66BAF803"            # mov dx, 0x3f8
        "B050" "EE"           # mov al, 'P'; out dx, al
        "0F20E0" "0D20000000" "0F22E0"  # cr4 |= PAE
        "B800200000" "0F22D8"           # cr3 = 0x2000
        "B9800000C0" "0F32" "0D00010000" "0F30"  # EFER |= LME (rdmsr/wrmsr)
        "0F20C0" "0D00000080" "0F22C0"  # cr0 |= PG
        "EAC01000001800")     # jmp 0x18:0x10c0


def test_long_mode_code_bytes():
    code = kvmapi._long_mode_code()
    offset = kvmapi.LONG_ENTRY - BASE
    assert IMAGE[offset:offset + len(code)] == code
    assert code == bytes.fromhex(
        "66BAF803"                # mov dx, 0x3f8
        "48B8000000004C000000"    # mov rax, 0x4c00000000
        "48C1E820"                # shr rax, 32
        "EE"                      # out dx, al
        "E928010000")             # jmp 0x1200 (0x10d8 + 0x128)


def test_workload_code_bytes():
    code = kvmapi._workload_code()
    offset = kvmapi.WORKLOAD_ENTRY - BASE
    assert IMAGE[offset:offset + len(code)] == code
    assert code == bytes.fromhex(
        "BF00130000"      # mov edi, 0x1300
        "31C0" "31D2"     # xor eax, eax; xor edx, edx   (expected 0)
        "BB01000000" "31C9"  # mov ebx, 1; xor ecx, ecx  (new 1)
        "F0480FC70F"      # lock cmpxchg16b [rdi]
        "7519"            # jnz bad
        "48391F"          # cmp [rdi], rbx
        "7514"            # jne bad
        "66BAF803" "B057" "EE"  # out 'W'
        "B9A0860100"      # mov ecx, 100000
        "FFC9" "75FC"     # loop: dec ecx; jnz loop
        "B045" "EE"       # out 'E'
        "F4"              # hlt
        "F4")             # bad: hlt
    scratch = kvmapi.SCRATCH_ADDR - BASE
    assert kvmapi.SCRATCH_ADDR % 16 == 0 and IMAGE[scratch:scratch + 16] == bytes(16)


def test_unused_code_page_bytes_halt():
    pieces = [(kvmapi.REAL_ENTRY, len(kvmapi._real_mode_code())),
              (kvmapi.PROTECTED_ENTRY, len(kvmapi._protected_mode_code())),
              (kvmapi.LONG_ENTRY, len(kvmapi._long_mode_code())),
              (kvmapi.WORKLOAD_ENTRY, len(kvmapi._workload_code())), (kvmapi.SCRATCH_ADDR, 16),
              (kvmapi.GDT_ADDR, 32), (kvmapi.GDTR_ADDR, 6), (kvmapi.NULL_IDTR_ADDR, 6)]
    used = {address - BASE + i for address, size in pieces for i in range(size)}
    assert all(IMAGE[i] == 0xF4 for i in range(4096) if i not in used)


OBJDUMP = shutil.which("objdump")


def disassemble(address: int, size: int, machine: str) -> list[str]:
    start = address - BASE
    with tempfile.NamedTemporaryFile(suffix=".bin") as image:
        image.write(IMAGE)
        image.flush()
        done = subprocess.run(
            [OBJDUMP, "-D", "-b", "binary", "-m", machine, "-M", "intel",
             f"--start-address={start:#x}", f"--stop-address={start + size:#x}", image.name],
            capture_output=True, check=True)
    lines = []
    for line in done.stdout.decode().splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and parts[0].strip().endswith(":"):
            lines.append(" ".join(parts[2].split()))
    return lines


@pytest.mark.skipif(OBJDUMP is None, reason="binutils' objdump is not installed")
def test_code_disassembles_as_intended_in_each_mode():
    assert disassemble(kvmapi.REAL_ENTRY, len(kvmapi._real_mode_code()), "i8086") == [
        "cli", "mov dx,0x3f8", "mov al,0x52", "out dx,al", "lidtd ds:0x1128", "lgdtd ds:0x1120",
        "mov eax,cr0", "or al,0x1", "mov cr0,eax", "jmp 0x8:0x1040"]
    assert disassemble(kvmapi.PROTECTED_ENTRY, len(kvmapi._protected_mode_code()), "i386") == [
        "mov ax,0x10", "mov ds,eax", "mov es,eax", "mov fs,eax", "mov gs,eax", "mov ss,eax",
        "mov dx,0x3f8", "mov al,0x50", "out dx,al",
        "mov eax,cr4", "or eax,0x20", "mov cr4,eax", "mov eax,0x2000", "mov cr3,eax",
        "mov ecx,0xc0000080", "rdmsr", "or eax,0x100", "wrmsr",
        "mov eax,cr0", "or eax,0x80000000", "mov cr0,eax", "jmp 0x18:0x10c0"]
    assert disassemble(kvmapi.LONG_ENTRY, len(kvmapi._long_mode_code()), "i386:x86-64") == [
        "mov dx,0x3f8", "movabs rax,0x4c00000000", "shr rax,0x20", "out dx,al", "jmp 0x200"]  # file offsets
    assert disassemble(kvmapi.WORKLOAD_ENTRY, len(kvmapi._workload_code()), "i386:x86-64") == [
        "mov edi,0x1300", "xor eax,eax", "xor edx,edx", "mov ebx,0x1", "xor ecx,ecx",
        "lock cmpxchg16b OWORD PTR [rdi]", "jne 0x230", "cmp QWORD PTR [rdi],rbx", "jne 0x230",
        "mov dx,0x3f8", "mov al,0x57", "out dx,al", "mov ecx,0x186a0", "dec ecx", "jne 0x228",
        "mov al,0x45", "out dx,al", "hlt", "hlt"]


@pytest.mark.skipif(OBJDUMP is None, reason="binutils' objdump is not installed")
def test_long_mode_byte_needs_64_bit_code():
    """Run as 32-bit code (a code64 descriptor without L), 'L' never reaches AL."""
    listing = disassemble(kvmapi.LONG_ENTRY, len(kvmapi._long_mode_code()), "i386")
    # AL becomes 0, then a store to linear 0 (not guest RAM): an MMIO exit, not 'L'.
    assert listing[:5] == ["mov dx,0x3f8", "dec eax", "mov eax,0x0", "dec esp", "add BYTE PTR [eax],al"]
    assert "out dx,al" not in listing


def test_far_jumps_land_on_the_next_stage_through_the_right_selectors():
    real, protected = kvmapi._real_mode_code(), kvmapi._protected_mode_code()
    assert real[-5] == 0xEA and struct.unpack("<HH", real[-4:]) == (kvmapi.PROTECTED_ENTRY, 0x08)
    assert protected[-7] == 0xEA and struct.unpack("<IH", protected[-6:]) == (kvmapi.LONG_ENTRY, 0x18)
    gdt = at(kvmapi.GDT_ADDR, "<4Q")
    assert decode_descriptor(gdt[0x08 // 8])["db"] == 1 and decode_descriptor(gdt[0x18 // 8])["l"] == 1


# --- supported CPUID ----------------------------------------------------------------------
def test_cpuid_parsing_and_the_long_mode_bit():
    data = cpuid2(FAKE_CPUID)
    assert kvmapi.cpuid_entries(data) == FAKE_CPUID
    assert kvmapi.offers_long_mode(data)
    assert not kvmapi.offers_long_mode(cpuid2([(0x80000001, 0, 0, 0, 0, 0, 0xFFFFFFFF & ~(1 << 29))]))
    assert not kvmapi.offers_long_mode(cpuid2([(0x1, 0, 0, 0, 0, 0, 1 << 29)]))  # another leaf
    assert not kvmapi.offers_long_mode(cpuid2([]))


def test_supported_cpuid_is_trimmed_and_asked_once_per_handle(tmp_path, monkeypatch):
    fake = FakeKvm(tmp_path, ())
    monkeypatch.setattr(kvmapi, "_raw_ioctl", fake)
    with KvmHandle(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)) as handle:
        assert handle.supported_cpuid() == cpuid2(FAKE_CPUID)
        assert handle.supported_cpuid() == cpuid2(FAKE_CPUID)
    assert fake.calls.count(kvmapi.KVM_GET_SUPPORTED_CPUID) == 1
    assert fake.cpuid_capacities == [256]


def test_supported_cpuid_retries_with_more_room_on_e2big(tmp_path, monkeypatch):
    fake = FakeKvm(tmp_path, (), cpuid=[(0x40000000 + i, 0, 0, 0, 0, 0, 0) for i in range(300)])
    monkeypatch.setattr(kvmapi, "_raw_ioctl", fake)
    with KvmHandle(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)) as handle:
        assert len(kvmapi.cpuid_entries(handle.supported_cpuid())) == 300
    assert fake.cpuid_capacities == [256, 2048]


def test_vm_without_its_handle_opens_the_device_for_the_cpuid(tmp_path, monkeypatch):
    fake = FakeKvm(tmp_path, ())
    monkeypatch.setattr(kvmapi, "_raw_ioctl", fake)
    before = open_fds()
    handle = KvmHandle(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC), os.devnull)
    handle.close()
    vm = KvmVm(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC), RUN_SIZE, os.devnull, handle=handle)
    assert vm.supported_cpuid() == cpuid2(FAKE_CPUID)
    vm.close()
    assert open_fds() == before


# --- capabilities -------------------------------------------------------------
REQUIRED_CAPS = {
    "KVM_CAP_IRQCHIP": 0, "KVM_CAP_HLT": 1, "KVM_CAP_USER_MEMORY": 3,
    "KVM_CAP_NR_VCPUS": 9, "KVM_CAP_NR_MEMSLOTS": 10, "KVM_CAP_TSC_CONTROL": 60,
    "KVM_CAP_MAX_VCPUS": 66, "KVM_CAP_ENABLE_CAP_VM": 98,
    "KVM_CAP_SPLIT_IRQCHIP": 121, "KVM_CAP_X2APIC_API": 129,
    "KVM_CAP_IMMEDIATE_EXIT": 136, "KVM_CAP_X86_DISABLE_EXITS": 143,
    "KVM_CAP_NESTED_STATE": 157, "KVM_CAP_X86_USER_SPACE_MSR": 188,
    "KVM_CAP_X86_MSR_FILTER": 189, "KVM_CAP_EXIT_HYPERCALL": 201,
    "KVM_CAP_XSAVE2": 208,
}


def test_capabilities_include_the_required_numbers():
    by_name = {cap.name: cap.number for cap in CAPABILITIES}
    for name, number in REQUIRED_CAPS.items():
        assert by_name.get(name) == number, name


def test_capabilities_are_unique_ordered_and_described():
    numbers = [cap.number for cap in CAPABILITIES]
    assert numbers == sorted(set(numbers))
    assert len({cap.name for cap in CAPABILITIES}) == len(CAPABILITIES)
    for cap in CAPABILITIES:
        assert isinstance(cap, Capability)
        assert cap.name.startswith("KVM_CAP_")
        assert 0 < len(cap.purpose) <= 80


def test_capabilities_never_probe_the_unmerged_vmware_numbers():
    assert not {239, 240, 241} & {cap.number for cap in CAPABILITIES}


def test_capability_is_frozen():
    with pytest.raises(AttributeError):
        CAPABILITIES[0].number = 5


# --- KvmError -------------------------------------------------------------------
def test_kvm_error_message_and_fields():
    exc = KvmError("KVM_CREATE_VM", errno.EBUSY)
    assert exc.operation == "KVM_CREATE_VM"
    assert exc.errno == errno.EBUSY
    assert exc.strerror == os.strerror(errno.EBUSY)
    assert str(exc) == "KVM_CREATE_VM failed: [Errno 16] Device or resource busy"


def test_kvm_error_survives_pickling():
    exc = pickle.loads(pickle.dumps(KvmError("KVM_RUN", errno.EFAULT, "Bad address")))
    assert (exc.operation, exc.errno, exc.strerror) == ("KVM_RUN", errno.EFAULT, "Bad address")


def test_ioctl_on_closed_fd_is_ebadf_with_the_operation():
    with pytest.raises(KvmError) as info:
        kvmapi._ioctl(-1, "KVM_CHECK_EXTENSION", kvmapi.KVM_CHECK_EXTENSION, 3)
    assert (info.value.operation, info.value.errno) == ("KVM_CHECK_EXTENSION", errno.EBADF)


def test_ioctl_failure_carries_name_and_errno(monkeypatch):
    def failing(fd, request, arg=0):
        raise OSError(errno.ENOTTY, "Inappropriate ioctl for device")

    monkeypatch.setattr(kvmapi, "_raw_ioctl", failing)
    with pytest.raises(KvmError) as info:
        KvmHandle(5).api_version()
    assert info.value.operation == "KVM_GET_API_VERSION"
    assert info.value.errno == errno.ENOTTY


def test_open_missing_path_is_open_enoent(tmp_path):
    with pytest.raises(KvmError) as info:
        kvmapi.KvmBackend().open_device(str(tmp_path / "missing"))
    assert (info.value.operation, info.value.errno) == ("open", errno.ENOENT)


# --- handle and VM wiring with a fake ioctl -----------------------------------------
def test_handle_passes_requests_and_closes_once(monkeypatch):
    seen = []

    def fake(fd, request, arg=0):
        seen.append((request, arg))
        if request == kvmapi.KVM_CREATE_VM:
            return os.open(os.devnull, os.O_RDONLY)
        return {kvmapi.KVM_GET_API_VERSION: 12, kvmapi.KVM_GET_VCPU_MMAP_SIZE: RUN_SIZE}.get(request, 7)

    monkeypatch.setattr(kvmapi, "_raw_ioctl", fake)
    before = open_fds()
    with KvmHandle(os.open(os.devnull, os.O_RDONLY)) as handle:
        assert handle.api_version() == 12
        assert handle.check_extension(3) == 7
        assert handle.vcpu_mmap_size() == RUN_SIZE
        with handle.create_vm() as vm:
            assert vm.check_extension(105) == 7
        assert vm.closed
        vm.close()
    assert handle.closed
    handle.close()
    assert open_fds() == before
    assert (kvmapi.KVM_CHECK_EXTENSION, 3) in seen
    assert (kvmapi.KVM_CREATE_VM, 0) in seen
    with pytest.raises(KvmError) as info:
        handle.create_vm()
    assert info.value.errno == errno.EBADF


# --- decoding kvm_run ----------------------------------------------------------------
def test_decode_io_exit():
    info = kvmapi._decode_exit(io_exit(port=0x3F8, value=0x4B))
    assert (info.name, info.port, info.direction, info.size, info.count) == ("IO", 0x3F8, 1, 1, 1)
    assert info.data == b"K"


def test_decode_io_exit_with_data_outside_the_mapping():
    info = kvmapi._decode_exit(io_exit(data_offset=RUN_SIZE))
    assert info.data is None
    assert "outside" in kvmapi._io_problem(info, [], False)


@pytest.mark.parametrize("reason, layout, expected", [
    (9, ("=QI", 0x80000021, 3), "hardware_entry_failure_reason 0x80000021 on cpu 3"),
    (17, ("=II", 1, 0), "suberror 1 (instruction emulation failed)"),
    (0, ("=Q", 0x30), "hardware_exit_reason 0x30"),
    (6, ("=Q", 0x5000), "0x5000"),
    (8, None, "triple-faulted"),
])
def test_decode_other_exits(reason, layout, expected):
    buf = make_run_buffer(reason)
    if layout:
        struct.pack_into(layout[0], buf, 32, *layout[1:])
    info = kvmapi._decode_exit(buf)
    assert info.name == kvmapi.EXIT_REASONS[reason]
    assert expected in info.detail


def test_unknown_exit_reason_gets_a_numbered_name():
    assert kvmapi._decode_exit(make_run_buffer(999)).name == "UNKNOWN(999)"
    assert kvmapi._exit_name(5) == "HLT"


# --- _drive_guest: the exit-judging loop ---------------------------------------------
def scripted(steps):
    """A run_once that copies the next scripted kvm_run image into `area`."""
    area = bytearray(RUN_SIZE)
    steps = list(steps)

    def run_once():
        step = steps.pop(0)
        if isinstance(step, BaseException) or (isinstance(step, type) and issubclass(step, BaseException)):
            raise step
        area[:] = step

    return run_once, area


def drive(steps, max_runs=8):
    run_once, area = scripted(steps)
    return kvmapi._drive_guest(run_once, area, max_runs, 1.0)


def test_drive_full_run_reaches_every_stage_and_times_the_loop():
    out = drive(full_run())
    assert (out.exits, out.port, out.byte, out.runs, out.problem) == (
        ("IO", "IO", "IO", "IO", "IO", "HLT"), 0x3F8, E, 6, None)
    assert out.stages == FULL_STAGES and out.stopped_in is None
    assert isinstance(out.loop_ns, int) and out.loop_ns >= 0


def test_drive_times_only_the_kvm_run_that_ran_the_loop():
    steps = full_run()
    slow = steps[4]  # the 'E' exit: its KVM_RUN is the loop
    timeline = [0.0, 0.0, 0.0, 0.0, 0.05, 0.0]

    def run_once_factory():
        iterator = iter(zip(steps, timeline))

        def run_once():
            buffer, delay = next(iterator)
            time.sleep(delay)
            run_area[:] = buffer
        return run_once

    run_area = bytearray(RUN_SIZE)
    out = kvmapi._drive_guest(run_once_factory(), run_area, 16, 1.0)
    assert slow is steps[4] and out.problem is None
    assert 40_000_000 <= out.loop_ns < 1_000_000_000


# The exits that end each stage: the progress bytes so far, then the failure.
BEFORE = {"real": [], "real+": [io_exit(R)], "protected": [io_exit(R), io_exit(P)],
          "long": [io_exit(R), io_exit(P), io_exit(L)], "workload": [io_exit(R), io_exit(P), io_exit(L), io_exit(W)]}
REACHED = {"real": (), "real+": ("real",), "protected": ("real", "protected"), "long": FULL_STAGES[:3],
           "workload": FULL_STAGES}
AFTER = {"real": "before its first progress byte", "real+": "after reaching real",
         "protected": "after reaching real, protected", "long": "after reaching real, protected, long",
         "workload": "after reaching real, protected, long, workload"}
WHERE = {"real": "real mode", "protected": "protected mode", "long": "long mode", "workload": "the workload stage"}


def exit_with(reason: int, layout=None) -> bytearray:
    buf = make_run_buffer(reason)
    if layout:
        struct.pack_into(layout[0], buf, 32, *layout[1:])
    return buf


UNEXPECTED = [
    (8, None, "SHUTDOWN", "(the guest triple-faulted)"),
    (9, ("=QI", 0x80000021, 0), "FAIL_ENTRY", "(hardware_entry_failure_reason 0x80000021 on cpu 0)"),
    (17, ("=II", 3, 0), "INTERNAL_ERROR", "(suberror 3 (exit while delivering an event))"),
    (6, ("=Q", 0x0), "MMIO", "(guest-physical address 0x0 is not RAM)"),
]


@pytest.mark.parametrize("where", ["real", "real+", "protected", "long", "workload"])
@pytest.mark.parametrize("reason, layout, name, detail", UNEXPECTED)
def test_drive_unexpected_exit_names_the_stage_and_the_reason(where, reason, layout, name, detail):
    out = drive(BEFORE[where] + [exit_with(reason, layout), make_run_buffer(HLT)])
    stage = where.rstrip("+")
    assert out.stages == REACHED[where] and out.stopped_in == stage and out.loop_ns is None
    assert out.exits == ("IO",) * len(REACHED[where]) + (name,)
    assert out.problem == f"stopped in {WHERE[stage]}: unexpected {name} exit {detail} {AFTER[where]}"


def test_drive_emulation_failure_in_long_mode_reads_as_on_paravirtual_kvm():
    """What kvm_pvm answers to lock cmpxchg16b (seen on the development machine)."""
    out = drive(BEFORE["long"] + [exit_with(17, ("=II", 1, 0))])
    assert out.stopped_in == "long" and out.exits == ("IO", "IO", "IO", "INTERNAL_ERROR")
    assert out.problem == ("stopped in long mode: unexpected INTERNAL_ERROR exit (suberror 1 (instruction emulation "
                           "failed)) after reaching real, protected, long")


def test_drive_halt_after_long_mode_means_the_compare_exchange_failed():
    out = drive(BEFORE["long"] + [make_run_buffer(HLT)])
    assert out.stopped_in == "long"
    assert out.problem == ("stopped in long mode: the guest halted (lock cmpxchg16b did not swap the 16 bytes as it "
                           "must) after reaching real, protected, long")


def test_drive_halt_in_the_loop_is_a_stop_before_its_end():
    out = drive(BEFORE["workload"] + [make_run_buffer(HLT)])
    assert out.stopped_in == "workload" and out.loop_ns is None
    assert out.problem == ("stopped in the workload stage: the guest halted before its loop ended after reaching "
                           "real, protected, long, workload")


def test_drive_shutdown_in_protected_mode_reads_as_documented():
    out = drive([io_exit(R), io_exit(P), make_run_buffer(8)])
    assert out.problem == ("stopped in protected mode: unexpected SHUTDOWN exit (the guest triple-faulted) "
                           "after reaching real, protected")


@pytest.mark.parametrize("where", ["real", "real+", "protected"])
def test_drive_halt_before_long_mode_is_a_stop_in_that_stage(where):
    out = drive(BEFORE[where] + [make_run_buffer(HLT)])
    stage = where.rstrip("+")
    assert out.stopped_in == stage and out.stages == REACHED[where]
    assert out.problem == f"stopped in {stage} mode: the guest halted {AFTER[where]}"


@pytest.mark.parametrize("where", ["real", "real+", "protected", "long", "workload"])
def test_drive_timeout_names_the_stage(where):
    out = drive(BEFORE[where] + [kvmapi._GuestTimeout])
    stage = where.rstrip("+")
    n = len(BEFORE[where])
    assert out.stopped_in == stage and out.runs == n + 1 and out.exits == ("IO",) * n
    assert out.problem == (f"timeout in {WHERE[stage]}: the guest did not halt within 1 s "
                           f"(KVM_RUN interrupted after {n} exit(s)) {AFTER[where]}")


@pytest.mark.parametrize("position, expected", [(0, "0x52 ('R'), the real-mode progress byte"),
                                                (1, "0x50 ('P'), the protected-mode progress byte"),
                                                (2, "0x4c ('L'), the long-mode progress byte"),
                                                (3, "0x57 ('W'), the workload-mode progress byte")])
def test_drive_wrong_byte_names_the_stage_and_the_guest_continues(position, expected):
    steps = full_run()
    steps[position] = io_exit(0x41)
    out = drive(steps)
    where = ("real mode", "real mode", "protected mode", "long mode")[position]
    assert out.problem.startswith(f"guest wrote 0x41 ('A') to port 0x3f8 in {where}, expected {expected}")
    assert out.exits == ("IO",) * 5 + ("HLT",) and out.runs == 6
    # later bytes no longer match the next stage, so the guest stops where the wrong byte came
    assert out.stages == FULL_STAGES[:position]
    assert out.stopped_in == (FULL_STAGES[position - 1] if position else "real")


def test_drive_wrong_port_keeps_port_and_byte_of_the_last_io():
    out = drive([io_exit(R, port=0x80), make_run_buffer(HLT)])
    assert out.port == 0x80 and out.byte == R and out.stages == ()
    assert out.problem.startswith("guest wrote to port 0x80 in real mode, expected 0x3f8")


def test_drive_in_instead_of_out_has_no_byte():
    out = drive([io_exit(direction=0), make_run_buffer(HLT)])
    assert out.byte is None and "unexpected I/O in real mode" in out.problem
    assert "expected a one-byte out" in out.problem


def test_drive_extra_io_after_the_loop():
    out = drive(full_run()[:5] + [io_exit(0x21), make_run_buffer(HLT)])
    assert out.stages == FULL_STAGES and out.stopped_in is None and out.byte == 0x21
    assert out.problem == ("unexpected extra I/O exit in the workload stage: out port 0x3f8, size 1, count 1, "
                           "byte 0x21 ('!')")


def test_drive_a_second_loop_end_is_an_extra_exit():
    out = drive(full_run()[:5] + [io_exit(E), make_run_buffer(HLT)])
    assert out.problem.startswith("unexpected extra I/O exit in the workload stage")


def test_drive_keeps_the_first_io_problem_and_the_stop():
    out = drive([io_exit(0x41), io_exit(0x42), make_run_buffer(8)])
    assert out.problem == ("guest wrote 0x41 ('A') to port 0x3f8 in real mode, expected 0x52 ('R'), "
                           "the real-mode progress byte; stopped in real mode: unexpected SHUTDOWN exit "
                           "(the guest triple-faulted) before its first progress byte")


def test_drive_is_bounded_by_max_runs():
    out = drive([io_exit(R)] + [io_exit(0x3F)] * 10, max_runs=3)
    assert out.runs == 3 and out.exits == ("IO", "IO", "IO")
    assert out.problem.endswith("stopped in real mode: the guest did not halt within 3 KVM_RUN calls "
                                "after reaching real")
    assert out.stopped_in == "real"


def test_drive_retries_after_a_foreign_signal():
    out = drive([io_exit(R), InterruptedError, io_exit(P), io_exit(L), io_exit(W), io_exit(E), make_run_buffer(HLT)])
    assert out.exits == ("IO",) * 5 + ("HLT",) and out.runs == 7 and out.problem is None
    assert out.stages == FULL_STAGES


# --- the SIGALRM guard without KVM ----------------------------------------------------
def _previous_handler(signum, frame):
    raise AssertionError("the previous SIGALRM handler must not see the guard's alarms")


@pytest.fixture
def foreign_alarm():
    """A previous SIGALRM handler and a long ITIMER_REAL, removed afterwards."""
    old = signal.signal(signal.SIGALRM, _previous_handler)
    signal.setitimer(signal.ITIMER_REAL, 100.0)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, old)


def test_guard_interrupts_a_blocking_call_and_restores_state(foreign_alarm):
    read_end, write_end = os.pipe()
    start = time.monotonic()
    try:
        with pytest.raises(kvmapi._GuestTimeout):
            with kvmapi._AlarmGuard(0.1) as guard:
                guard.call(lambda: os.read(read_end, 1))  # would block forever
    finally:
        os.close(read_end)
        os.close(write_end)
    assert time.monotonic() - start < 1.0
    assert signal.getsignal(signal.SIGALRM) is _previous_handler
    remaining, _interval = signal.getitimer(signal.ITIMER_REAL)
    assert 98.0 < remaining <= 100.0


def test_guard_sets_immediate_exit_and_refuses_later_calls():
    area = bytearray(RUN_SIZE)
    with kvmapi._AlarmGuard(0.05) as guard:
        guard.run_area = area
        deadline = time.monotonic() + 2.0
        while not guard.expired and time.monotonic() < deadline:
            sum(range(1000))  # bytecodes, so the handler gets to run
        assert guard.expired and area[1] == 1
        with pytest.raises(kvmapi._GuestTimeout):
            guard.call(lambda: None)
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_guard_gives_an_overdue_previous_timer_back_at_once():
    fired = []
    old = signal.signal(signal.SIGALRM, lambda s, f: fired.append(s))
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        with kvmapi._AlarmGuard(5.0):
            time.sleep(0.1)  # the previous timer falls due while the guard holds SIGALRM
        deadline = time.monotonic() + 1.0
        while not fired and time.monotonic() < deadline:
            time.sleep(0.01)
        assert fired == [signal.SIGALRM]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_guard_is_unavailable_off_the_main_thread():
    seen = []
    worker = threading.Thread(target=lambda: seen.append(_try_guard()))
    worker.start()
    worker.join()
    assert seen == ["unavailable"]


def _try_guard():
    try:
        kvmapi._AlarmGuard(1.0)
    except kvmapi._GuardUnavailable:
        return "unavailable"
    return "available"


# --- run_smoke_guest end to end against FakeKvm ---------------------------------------
def test_fake_smoke_run_sets_up_the_guest_and_cleans_up(fake_vm):
    vm, fake = fake_vm(full_run())
    before = open_fds()
    result = vm.run_smoke_guest()
    assert isinstance(result, GuestRun)
    assert result == GuestRun(True, ("IO",) * 5 + ("HLT",), 0x3F8, E, 6, result.duration_ns, None,
                              FULL_STAGES, None, result.loop_ns)
    assert isinstance(result.loop_ns, int)
    assert result.duration_ns > 0
    slot, flags, gpa, size, address = fake.regions[0]
    assert (slot, flags, gpa, size) == (0, 0, 0x1000, 4 * 4096) and address != 0
    assert fake.memory == build_smoke_guest()  # code, GDT and page tables in guest RAM
    assert fake.regions[-1][3] == 0  # slot deleted on the way out
    assert fake.cpuid_set == cpuid2(FAKE_CPUID)  # the vCPU gets the supported CPUID
    calls = fake.calls
    assert calls.index(kvmapi.KVM_SET_CPUID2) < calls.index(kvmapi.KVM_SET_SREGS) < calls.index(kvmapi.KVM_RUN)
    assert struct.unpack_from(kvmapi.SEGMENT_HEAD_FORMAT, fake.sregs_set, 0) == (0, 0xFFFF, 0)
    assert fake.regs_set[kvmapi.REGS_RIP_INDEX] == 0x1000
    assert fake.regs_set[kvmapi.REGS_RFLAGS_INDEX] == 0x2
    assert fake.vcpu_ids == [0]
    assert open_fds() == before


def test_fake_custom_code_is_loaded_at_the_entry_point(fake_vm):
    vm, fake = fake_vm([io_exit(0x4B), make_run_buffer(HLT)])
    result = vm.run_smoke_guest(bytes.fromhex("BAF803B04BEEF4"))
    assert fake.memory[:7] == bytes.fromhex("BAF803B04BEEF4") and fake.memory[7:] == bytes(4 * 4096 - 7)
    assert not result.ok and result.stopped_in == "real" and result.byte == 0x4B


def test_fake_second_run_uses_a_new_vcpu_id_and_asks_the_cpuid_once(fake_vm):
    vm, fake = fake_vm(full_run() * 2)
    assert vm.run_smoke_guest().ok and vm.run_smoke_guest().ok
    assert fake.vcpu_ids == [0, 1]
    assert fake.calls.count(kvmapi.KVM_GET_SUPPORTED_CPUID) == 1


@pytest.mark.parametrize("where", ["real", "protected", "long"])
def test_fake_hanging_guest_times_out_naming_the_stage(fake_vm, where):
    steps = {"real": [], "protected": [io_exit(R), io_exit(P)], "long": full_run()[:3]}[where]
    vm, _fake = fake_vm(steps + [Hang()])
    start = time.monotonic()
    result = vm.run_smoke_guest(timeout_s=0.2)
    assert time.monotonic() - start < 1.5
    assert not result.ok and result.stopped_in == where
    assert result.problem.startswith(f"timeout in {where} mode: the guest did not halt within 0.2 s")
    assert result.duration_ns >= 150_000_000


@pytest.mark.parametrize("reason, name", [(8, "SHUTDOWN"), (9, "FAIL_ENTRY"), (17, "INTERNAL_ERROR")])
@pytest.mark.parametrize("where", ["real", "protected", "long"])
def test_fake_unexpected_exit_in_each_stage(fake_vm, where, reason, name):
    steps = {"real": [], "protected": [io_exit(R), io_exit(P)], "long": full_run()[:3]}[where]
    vm, _fake = fake_vm(steps + [make_run_buffer(reason)])
    result = vm.run_smoke_guest()
    assert not result.ok and result.stopped_in == where and result.exits[-1] == name
    assert result.problem.startswith(f"stopped in {where} mode: unexpected {name} exit (")


def test_fake_wrong_byte_and_wrong_port(fake_vm):
    vm, _fake = fake_vm([io_exit(R), io_exit(0x41), make_run_buffer(HLT),
                         io_exit(R, port=0x2F8), make_run_buffer(HLT)])
    wrong_byte = vm.run_smoke_guest()
    assert not wrong_byte.ok and wrong_byte.byte == 0x41 and wrong_byte.stages == ("real",)
    assert wrong_byte.problem.startswith("guest wrote 0x41 ('A') to port 0x3f8 in real mode, expected 0x50 ('P')")
    wrong_port = vm.run_smoke_guest()
    assert not wrong_port.ok and wrong_port.port == 0x2F8
    assert wrong_port.problem.startswith("guest wrote to port 0x2f8 in real mode, expected 0x3f8")


def test_fake_stop_in_protected_mode_without_long_mode_in_the_cpuid_says_so(fake_vm):
    vm, _fake = fake_vm([io_exit(R), io_exit(P), make_run_buffer(8)], cpuid=FAKE_CPUID[:1])
    result = vm.run_smoke_guest()
    assert result.problem.endswith("; KVM_GET_SUPPORTED_CPUID offers no long mode "
                                   "(CPUID.80000001H:EDX.LM clear), so the guest may not set EFER.LME")
    vm, _fake = fake_vm([io_exit(R), io_exit(P), make_run_buffer(8)])
    assert "CPUID" not in vm.run_smoke_guest().problem  # LM offered: no such note


FAILING_STEPS = ["KVM_GET_SUPPORTED_CPUID", "KVM_SET_USER_MEMORY_REGION", "KVM_CREATE_VCPU", "KVM_SET_CPUID2",
                 "KVM_GET_SREGS", "KVM_SET_SREGS", "KVM_SET_REGS", "KVM_RUN"]


@pytest.mark.parametrize("number", [errno.EIO, errno.EMFILE, errno.ENOMEM, errno.EPERM])
@pytest.mark.parametrize("failing", FAILING_STEPS)
def test_fake_failure_at_each_step_raises_operation_and_errno_and_leaks_nothing(fake_vm, failing, number):
    vm, _fake = fake_vm(fail_on=getattr(kvmapi, failing), fail_errno=number)
    before = open_fds()
    with pytest.raises(KvmError) as info:
        vm.run_smoke_guest()
    assert info.value.operation == failing and info.value.errno == number
    assert open_fds() == before


def test_kvm_run_error_other_than_eintr_raises(fake_vm):
    vm, _fake = fake_vm([errno.EFAULT])
    with pytest.raises(KvmError) as info:
        vm.run_smoke_guest()
    assert (info.value.operation, info.value.errno) == ("KVM_RUN", errno.EFAULT)


def test_mmap_failure_is_a_kvm_error(fake_vm, monkeypatch):
    import mmap

    vm, _fake = fake_vm(full_run())

    def failing(*args, **kwargs):
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    monkeypatch.setattr(mmap, "mmap", failing)
    with pytest.raises(KvmError) as info:
        vm.run_smoke_guest()
    assert (info.value.operation, info.value.errno) == ("mmap", errno.EMFILE)


def test_run_on_a_closed_vm_is_a_kvm_error():
    vm = KvmVm(-1, RUN_SIZE)
    with pytest.raises(KvmError) as info:
        vm.run_smoke_guest()
    assert info.value.errno == errno.EBADF


@pytest.mark.parametrize("kwargs", [
    {"code": b""}, {"code": b"\x90" * (4 * 4096 + 1)}, {"max_runs": 0}, {"timeout_s": 0},
])
def test_run_arguments_are_validated(kwargs):
    with pytest.raises(ValueError):
        KvmVm(-1, RUN_SIZE).run_smoke_guest(**kwargs)


def test_modules_are_imported_before_the_timed_session(fake_vm, monkeypatch):
    vm, _fake = fake_vm(full_run())
    order = []
    real_import, real_session = kvmapi._import_guest_modules, kvmapi._run_session
    monkeypatch.setattr(kvmapi, "_import_guest_modules", lambda: (order.append("import"), real_import()))
    monkeypatch.setattr(kvmapi, "_run_session", lambda *a: (order.append("session"), real_session(*a))[1])
    assert vm.run_smoke_guest().ok
    assert order == ["import", "session"]


# --- the child-process fallback ----------------------------------------------------------
def test_child_reply_carries_the_new_fields(monkeypatch):
    run = GuestRun(False, ("IO", "IO", "SHUTDOWN"), 0x3F8, P, 3, 1234, "stopped in protected mode: ...",
                   ("real", "protected"), "protected")
    reply = json.dumps({"run": run._asdict()}).encode()
    seen = {}

    def fake_run(argv, **kwargs):
        seen["argv"] = argv
        return subprocess.CompletedProcess(argv, 0, reply, b"")

    monkeypatch.setattr(subprocess, "run", fake_run)
    assert kvmapi._run_in_child("/dev/kvm", None, 16, 1.0, "test") == run
    assert seen["argv"][-3:] == ["", "16", "1.0"]  # "" = the default image


def test_child_that_cannot_start_raises_with_the_errno(monkeypatch):
    def fake_run(argv, **kwargs):
        raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))

    monkeypatch.setattr(subprocess, "run", fake_run)
    with pytest.raises(KvmError) as info:
        kvmapi._run_in_child("/dev/kvm", None, 16, 1.0, "test")
    assert (info.value.operation, info.value.errno) == ("start child process", errno.EAGAIN)


def test_child_that_overran_reports_no_stage(monkeypatch):
    def fake_run(argv, **kwargs):
        raise subprocess.TimeoutExpired(argv, kwargs["timeout"])

    monkeypatch.setattr(subprocess, "run", fake_run)
    result = kvmapi._run_in_child("/dev/kvm", b"\xf4", 16, 1.0, "test")
    assert not result.ok and result.stages == () and result.stopped_in == "real"
    assert result.problem.startswith("timeout in an unknown stage: the child running the guest overran 1 s")
