"""Minimal, leak-proof access to the Linux KVM ioctl API (x86-64).

This is the only module of kvmready that issues ioctls or maps memory.  It
opens /dev/kvm, queries the API version and capabilities, creates a VM and
runs a small smoke guest that walks the path an unmodified OS takes at boot:
real mode -> protected mode -> long mode, writing one progress byte per stage
to port 0x3f8 ('R', 'P', 'L') and halting in 64-bit mode.

Facts used here come from include/uapi/linux/kvm.h (KVMIO = 0xAE),
asm-generic/ioctl.h, arch/x86/include/uapi/asm/{kvm,processor-flags}.h,
arch/x86/include/asm/{msr-index,desc_defs,pgtable_types,cpufeatures}.h and
arch/x86/kvm/x86.c (EFER.LME needs CPUID.80000001H:EDX.LM in the guest's
CPUID, which is why the vCPU gets KVM_GET_SUPPORTED_CPUID as its CPUID, as
every VMM does).  Nothing happens at import time beyond defining constants;
array, fcntl, mmap, signal and threading are imported when a guest is about
to run, so the CLI starts fast.
"""

from __future__ import annotations

import contextlib
import errno
import os
import struct
import time
from typing import TYPE_CHECKING, NamedTuple, TypeVar, cast

from kvmready.kvmabi import KVM_DEVICE

if TYPE_CHECKING:
    import mmap
    from typing import Any, Callable, Optional, Tuple, Union

    Buffer = Union[bytes, bytearray, memoryview, mmap.mmap]  # anything holding a kvm_run

__all__ = [
    "CAPABILITIES", "STAGES",
    "Capability", "GuestRun", "KvmBackend", "KvmError", "KvmHandle", "KvmVm",
    "build_smoke_guest",
]

# --- ioctl numbers ----------------------------------------------------------
# asm-generic/ioctl.h: number = dir << 30 | size << 16 | type << 8 | nr.
_IOC_NONE = 0
_IOC_WRITE = 1
_IOC_READ = 2
KVMIO = 0xAE


def _ioc(direction: int, nr: int, size: int = 0) -> int:
    return (direction << 30) | (size << 16) | (KVMIO << 8) | nr


# Struct layouts, native x86-64 order, no implicit padding ("=").
# struct kvm_userspace_memory_region {u32 slot, flags; u64 gpa, size, uaddr}
MEMORY_REGION_FORMAT = "=IIQQQ"
# struct kvm_regs: rax..r15 (16 x u64), rip, rflags
REGS_FORMAT = "=18Q"
REGS_RIP_INDEX = 16
REGS_RFLAGS_INDEX = 17
# struct kvm_segment: u64 base, u32 limit, u16 selector, u8 type, present,
# dpl, db, s, l, g, avl, unusable, padding
SEGMENT_FORMAT = "=QIH10B"
# struct kvm_dtable: u64 base, u16 limit, u16 padding[3]
DTABLE_FORMAT = "=QH3H"
# struct kvm_sregs: cs ds es fs gs ss tr ldt, gdt idt, cr0 cr2 cr3 cr4 cr8
# efer apic_base, interrupt_bitmap[4]
SREGS_FORMAT = "=" + SEGMENT_FORMAT[1:] * 8 + DTABLE_FORMAT[1:] * 2 + "7Q4Q"
SREGS_CS_OFFSET = 0  # cs is the first member
SEGMENT_HEAD_FORMAT = "=QIH"  # base, limit, selector
# struct kvm_cpuid2: u32 nent, u32 padding, struct kvm_cpuid_entry2 entries[]
CPUID2_HEADER_FORMAT = "=II"
# struct kvm_cpuid_entry2: u32 function, index, flags, eax, ebx, ecx, edx, padding[3]
CPUID_ENTRY2_FORMAT = "=7I3I"
# Entries offered to KVM_GET_SUPPORTED_CPUID first: the kernel's
# KVM_MAX_CPUID_ENTRIES (256 today; it clamps a larger nent). E2BIG: retry larger.
CPUID_ENTRIES_TRIED = (256, 2048)

KVM_GET_API_VERSION = _ioc(_IOC_NONE, 0x00)
KVM_CREATE_VM = _ioc(_IOC_NONE, 0x01)
KVM_CHECK_EXTENSION = _ioc(_IOC_NONE, 0x03)
KVM_GET_VCPU_MMAP_SIZE = _ioc(_IOC_NONE, 0x04)
KVM_GET_SUPPORTED_CPUID = _ioc(_IOC_READ | _IOC_WRITE, 0x05, struct.calcsize(CPUID2_HEADER_FORMAT))
KVM_CREATE_VCPU = _ioc(_IOC_NONE, 0x41)
KVM_SET_USER_MEMORY_REGION = _ioc(
    _IOC_WRITE, 0x46, struct.calcsize(MEMORY_REGION_FORMAT)
)
KVM_RUN = _ioc(_IOC_NONE, 0x80)
KVM_GET_REGS = _ioc(_IOC_READ, 0x81, struct.calcsize(REGS_FORMAT))
KVM_SET_REGS = _ioc(_IOC_WRITE, 0x82, struct.calcsize(REGS_FORMAT))
KVM_GET_SREGS = _ioc(_IOC_READ, 0x83, struct.calcsize(SREGS_FORMAT))
KVM_SET_SREGS = _ioc(_IOC_WRITE, 0x84, struct.calcsize(SREGS_FORMAT))
KVM_SET_CPUID2 = _ioc(_IOC_WRITE, 0x90, struct.calcsize(CPUID2_HEADER_FORMAT))

# --- struct kvm_run (the mmap of a vCPU fd) ---------------------------------
RUN_IMMEDIATE_EXIT_OFFSET = 1
RUN_EXIT_REASON_FORMAT = "=I"
RUN_EXIT_REASON_OFFSET = 8
RUN_UNION_OFFSET = 32
# KVM_EXIT_IO: u8 direction, u8 size, u16 port, u32 count, u64 data_offset
RUN_IO_FORMAT = "=BBHIQ"
# KVM_EXIT_FAIL_ENTRY: u64 hardware_entry_failure_reason, u32 cpu
RUN_FAIL_ENTRY_FORMAT = "=QI"
# KVM_EXIT_INTERNAL_ERROR: u32 suberror, u32 ndata
RUN_INTERNAL_FORMAT = "=II"
# KVM_EXIT_UNKNOWN: u64 hardware_exit_reason; KVM_EXIT_MMIO: u64 phys_addr
RUN_U64_FORMAT = "=Q"
# KVM_EXIT_EXCEPTION: u32 exception, u32 error_code
RUN_EXCEPTION_FORMAT = "=II"
# KVM_EXIT_SYSTEM_EVENT: u32 type
RUN_SYSTEM_EVENT_FORMAT = "=I"

KVM_EXIT_IO_IN = 0
KVM_EXIT_IO_OUT = 1

EXIT_REASONS: dict[int, str] = dict(enumerate((
    "UNKNOWN", "EXCEPTION", "IO", "HYPERCALL", "DEBUG", "HLT", "MMIO",
    "IRQ_WINDOW_OPEN", "SHUTDOWN", "FAIL_ENTRY", "INTR", "SET_TPR",
    "TPR_ACCESS", "S390_SIEIC", "S390_RESET", "DCR", "NMI", "INTERNAL_ERROR",
    "OSI", "PAPR_HCALL", "S390_UCONTROL", "WATCHDOG", "S390_TSCH", "EPR",
    "SYSTEM_EVENT", "S390_STSI", "IOAPIC_EOI", "HYPERV", "ARM_NISV",
    "X86_RDMSR", "X86_WRMSR", "DIRTY_RING_FULL", "AP_RESET_HOLD",
    "X86_BUS_LOCK", "XEN", "RISCV_SBI", "RISCV_CSR", "NOTIFY",
    "LOONGARCH_IOCSR", "MEMORY_FAULT", "TDX",
)))
_EXIT_IO = 2
_EXIT_HLT = 5

INTERNAL_SUBERRORS = {
    1: "instruction emulation failed",
    2: "simultaneous exceptions",
    3: "exit while delivering an event",
    4: "unexpected exit reason",
}

# --- the smoke guest: real mode -> protected mode -> long mode -----------------
# x86 facts (Intel SDM vol. 3A; Linux arch/x86/include/uapi/asm/processor-flags.h,
# asm/msr-index.h, asm/desc_defs.h, asm/pgtable_types.h, asm/cpufeatures.h).
CR0_PE = 1 << 0  # X86_CR0_PE_BIT 0: protection enable
CR0_PG = 1 << 31  # X86_CR0_PG_BIT 31: paging
CR4_PAE = 1 << 5  # X86_CR4_PAE_BIT 5: physical address extension (64-bit paging needs it)
MSR_EFER = 0xC0000080  # IA32_EFER
EFER_LME = 1 << 8  # _EFER_LME 8: long mode enable
CPUID_EXT_FEATURES = 0x80000001
CPUID_EDX_LM = 1 << 29  # X86_FEATURE_LM (1*32+29): CPUID.80000001H:EDX bit 29
# A segment descriptor (struct desc_struct): limit 15:0 | base 23:0 << 16 |
# access byte << 40 | limit 19:16 << 48 | flags nibble << 52 | base 31:24 << 56.
SEG_PRESENT = 0x80  # access byte: P
SEG_CODE_DATA = 0x10  # access byte: S=1, a code or data segment (not a system one)
SEG_TYPE_CODE = 0xB  # code segment: execute/read, accessed (the CPU need not write the GDT)
SEG_TYPE_DATA = 0x3  # data segment: read/write, accessed
SEG_FLAG_G = 0x8  # flags: limit counts 4 KiB units
SEG_FLAG_DB = 0x4  # flags: 32-bit default operand size
SEG_FLAG_L = 0x2  # flags: 64-bit code segment (with D/B = 0)
# 4-level paging entries: bits 0 (P), 1 (R/W), 7 (PS: this PDE maps a 2 MiB page).
PTE_PRESENT = 1 << 0
PTE_WRITABLE = 1 << 1
PDE_LARGE_PAGE = 1 << 7
LARGE_PAGE_SIZE = 2 << 20

SMOKE_PORT = 0x3F8
# (stage, progress byte the guest writes to SMOKE_PORT on entering it), in order.  The last
# stage is the work an operating system does as soon as it runs in long mode: an atomic
# 16-byte compare-exchange (`lock cmpxchg16b`, which x86-64 kernels use from their first
# steps) and a tight loop.  Under paravirtual KVM (kvm_pvm) a guest kernel that is not
# PVM-enabled gets here only by instruction emulation, about a million instructions a
# second, and the emulator stops at cmpxchg16b (KVM_EXIT_INTERNAL_ERROR, emulation failure;
# seen on the development machine with a stock Debian kernel under qemu -accel kvm).
STAGES: tuple[tuple[str, int], ...] = (
    ("real", 0x52), ("protected", 0x50), ("long", 0x4C), ("workload", 0x57),  # R P L W
)
STAGE_NAMES = tuple(name for name, _byte in STAGES)
LOOP_DONE_BYTE = 0x45  # 'E': the timed loop of the workload stage has ended
SMOKE_BYTE = LOOP_DONE_BYTE  # the last byte a full run writes: GuestRun.byte after it
LOOP_ITERATIONS = 100_000
LOOP_INSTRUCTIONS = 2 * LOOP_ITERATIONS  # dec ecx; jnz
GUEST_PAGE_SIZE = 4096
GUEST_PHYS_ADDR = 0x1000  # slot 0 starts here, and so does the real-mode code
GUEST_MEMORY_SIZE = 4 * GUEST_PAGE_SIZE  # 0x1000-0x4fff: code + GDT, PML4, PDPT, PD
GUEST_SLOT = 0
GUEST_RFLAGS = 0x2  # bit 1 is reserved and must be set
# Guest-physical layout (identity-mapped, so also the linear addresses).
REAL_ENTRY = GUEST_PHYS_ADDR  # 16-bit code, entered from the reset state
PROTECTED_ENTRY = 0x1040  # 32-bit code
LONG_ENTRY = 0x10C0  # 64-bit code
GDT_ADDR = 0x1100  # null, 32-bit code, data, 64-bit code
GDTR_ADDR = 0x1120  # lgdt operand: u16 limit, u32 base
NULL_IDTR_ADDR = 0x1128  # lidt operand {0, 0}: any exception becomes a triple fault
PML4_ADDR = 0x2000
PDPT_ADDR = 0x3000
PD_ADDR = 0x4000
WORKLOAD_ENTRY = 0x1200  # 64-bit code: cmpxchg16b and the timed loop
SCRATCH_ADDR = 0x1300  # 16 zero bytes, 16-byte aligned: cmpxchg16b's operand
CODE32_SELECTOR = 0x08
DATA_SELECTOR = 0x10
CODE64_SELECTOR = 0x18
_HLT = 0xF4  # fills the unused part of the code page: stray execution halts


def segment_descriptor(base: int, limit: int, access: int, flags: int) -> int:
    """An 8-byte GDT code/data descriptor as an integer (little-endian in memory)."""
    return ((limit & 0xFFFF) | (base & 0xFFFFFF) << 16 | access << 40
            | ((limit >> 16) & 0xF) << 48 | flags << 52 | ((base >> 24) & 0xFF) << 56)


GDT_ENTRIES = (
    0,  # the null descriptor
    segment_descriptor(0, 0xFFFFF, SEG_PRESENT | SEG_CODE_DATA | SEG_TYPE_CODE, SEG_FLAG_G | SEG_FLAG_DB),
    segment_descriptor(0, 0xFFFFF, SEG_PRESENT | SEG_CODE_DATA | SEG_TYPE_DATA, SEG_FLAG_G | SEG_FLAG_DB),
    segment_descriptor(0, 0xFFFFF, SEG_PRESENT | SEG_CODE_DATA | SEG_TYPE_CODE, SEG_FLAG_G | SEG_FLAG_L),
)


def _u16(value: int) -> bytes:
    return struct.pack("<H", value)


def _u32(value: int) -> bytes:
    return struct.pack("<I", value)


def _real_mode_code() -> bytes:
    """16-bit code at REAL_ENTRY: report, load a null IDT and the GDT, set CR0.PE, far jump."""
    return b"".join((
        b"\xFA",  # cli
        b"\xBA" + _u16(SMOKE_PORT),  # mov dx, 0x3f8
        b"\xB0" + bytes([STAGES[0][1]]),  # mov al, 'R'
        b"\xEE",  # out dx, al
        b"\x66\x0F\x01\x1E" + _u16(NULL_IDTR_ADDR),  # o32 lidt [NULL_IDTR_ADDR]
        b"\x66\x0F\x01\x16" + _u16(GDTR_ADDR),  # o32 lgdt [GDTR_ADDR]
        b"\x0F\x20\xC0",  # mov eax, cr0
        b"\x0C" + bytes([CR0_PE]),  # or al, CR0.PE
        b"\x0F\x22\xC0",  # mov cr0, eax
        b"\xEA" + _u16(PROTECTED_ENTRY) + _u16(CODE32_SELECTOR),  # jmp 0x08:PROTECTED_ENTRY
    ))


def _protected_mode_code() -> bytes:
    """32-bit code at PROTECTED_ENTRY: data segments, report, PAE, CR3, EFER.LME, CR0.PG, far jump."""
    return b"".join((
        b"\x66\xB8" + _u16(DATA_SELECTOR),  # mov ax, 0x10
        b"\x8E\xD8",  # mov ds, ax
        b"\x8E\xC0",  # mov es, ax
        b"\x8E\xE0",  # mov fs, ax
        b"\x8E\xE8",  # mov gs, ax
        b"\x8E\xD0",  # mov ss, ax
        b"\x66\xBA" + _u16(SMOKE_PORT),  # mov dx, 0x3f8
        b"\xB0" + bytes([STAGES[1][1]]),  # mov al, 'P'
        b"\xEE",  # out dx, al
        b"\x0F\x20\xE0",  # mov eax, cr4
        b"\x0D" + _u32(CR4_PAE),  # or eax, CR4.PAE
        b"\x0F\x22\xE0",  # mov cr4, eax
        b"\xB8" + _u32(PML4_ADDR),  # mov eax, PML4_ADDR
        b"\x0F\x22\xD8",  # mov cr3, eax
        b"\xB9" + _u32(MSR_EFER),  # mov ecx, IA32_EFER
        b"\x0F\x32",  # rdmsr
        b"\x0D" + _u32(EFER_LME),  # or eax, EFER.LME
        b"\x0F\x30",  # wrmsr
        b"\x0F\x20\xC0",  # mov eax, cr0
        b"\x0D" + _u32(CR0_PG),  # or eax, CR0.PG  (-> IA-32e compatibility mode)
        b"\x0F\x22\xC0",  # mov cr0, eax
        b"\xEA" + _u32(LONG_ENTRY) + _u16(CODE64_SELECTOR),  # jmp 0x18:LONG_ENTRY
    ))


def _long_mode_code() -> bytes:
    """64-bit code at LONG_ENTRY: report, then on to the workload.

    The byte comes out of a REX.W move and shift, so only 64-bit code writes
    it: decoded as 32-bit code these bytes put 0 in AL and store to address 0,
    which is not guest RAM.
    """
    head = b"".join((
        b"\x66\xBA" + _u16(SMOKE_PORT),  # mov dx, 0x3f8
        b"\x48\xB8" + struct.pack("<Q", STAGES[2][1] << 32),  # mov rax, 'L' << 32
        b"\x48\xC1\xE8\x20",  # shr rax, 32
        b"\xEE",  # out dx, al
    ))
    after_jump = LONG_ENTRY + len(head) + 5
    return head + b"\xE9" + struct.pack("<i", WORKLOAD_ENTRY - after_jump)  # jmp WORKLOAD_ENTRY


def _workload_code() -> bytes:
    """64-bit code at WORKLOAD_ENTRY: the first things an x86-64 kernel does, then a timed loop.

    `lock cmpxchg16b` swaps 0 for 1 in SCRATCH_ADDR; only when it reports
    success (ZF) and memory holds the new value does the guest write 'W'.
    Then LOOP_ITERATIONS of `dec ecx; jnz` and 'E': the host times the
    KVM_RUN between the two, which runs nothing but the loop.  A wrong result
    halts without 'W'.
    """
    swap = b"".join((
        b"\xBF" + _u32(SCRATCH_ADDR),  # mov edi, SCRATCH_ADDR
        b"\x31\xC0",  # xor eax, eax     (rdx:rax = 0, the expected value)
        b"\x31\xD2",  # xor edx, edx
        b"\xBB" + _u32(1),  # mov ebx, 1       (rcx:rbx = 1, the new value)
        b"\x31\xC9",  # xor ecx, ecx
        b"\xF0\x48\x0F\xC7\x0F",  # lock cmpxchg16b [rdi]
    ))
    work = b"".join((
        b"\x66\xBA" + _u16(SMOKE_PORT),  # mov dx, 0x3f8
        b"\xB0" + bytes([STAGES[3][1]]),  # mov al, 'W'
        b"\xEE",  # out dx, al
        b"\xB9" + _u32(LOOP_ITERATIONS),  # mov ecx, LOOP_ITERATIONS
        b"\xFF\xC9",  # loop: dec ecx
        b"\x75\xFC",  # jnz loop
        b"\xB0" + bytes([LOOP_DONE_BYTE]),  # mov al, 'E'
        b"\xEE",  # out dx, al
        b"\xF4",  # hlt
    ))
    check = b"\x48\x39\x1F"  # cmp [rdi], rbx
    # jnz bad (after the swap), jne bad (after the check); `bad` is the hlt that ends the code.
    to_bad_from_check = len(work)
    to_bad_from_swap = len(check) + 2 + to_bad_from_check
    return swap + b"\x75" + bytes([to_bad_from_swap]) + check + b"\x75" + bytes([to_bad_from_check]) + work + b"\xF4"


def build_smoke_guest() -> bytes:
    """The smoke guest's memory: GUEST_MEMORY_SIZE bytes loaded at GUEST_PHYS_ADDR.

    Page 0x1000: the 16/32/64-bit code, the GDT and the lgdt/lidt operands
    (the rest HLT); 0x2000 PML4, 0x3000 PDPT, 0x4000 PD, whose entry 0 maps
    the 2 MiB page at 0 (identity, covering all of the guest's memory).
    """
    image = bytearray(GUEST_MEMORY_SIZE)
    image[:GUEST_PAGE_SIZE] = bytes([_HLT]) * GUEST_PAGE_SIZE
    pieces = ((REAL_ENTRY, _real_mode_code()), (PROTECTED_ENTRY, _protected_mode_code()),
              (LONG_ENTRY, _long_mode_code()), (WORKLOAD_ENTRY, _workload_code()),
              (SCRATCH_ADDR, bytes(16)), (GDT_ADDR, struct.pack("<4Q", *GDT_ENTRIES)),
              (GDTR_ADDR, struct.pack("<HI", 8 * len(GDT_ENTRIES) - 1, GDT_ADDR)),
              (NULL_IDTR_ADDR, struct.pack("<HI", 0, 0)),
              (PML4_ADDR, struct.pack("<Q", PDPT_ADDR | PTE_PRESENT | PTE_WRITABLE)),
              (PDPT_ADDR, struct.pack("<Q", PD_ADDR | PTE_PRESENT | PTE_WRITABLE)),
              (PD_ADDR, struct.pack("<Q", 0 | PTE_PRESENT | PTE_WRITABLE | PDE_LARGE_PAGE)))
    ends = sorted(address for address, _data in pieces) + [GUEST_PHYS_ADDR + GUEST_MEMORY_SIZE]
    for address, data in pieces:
        if address + len(data) > ends[ends.index(address) + 1]:
            raise AssertionError(f"smoke guest layout: {len(data)} bytes at {address:#x} overlap the next piece")
        offset = address - GUEST_PHYS_ADDR
        image[offset:offset + len(data)] = data
    if GUEST_PHYS_ADDR + GUEST_MEMORY_SIZE > LARGE_PAGE_SIZE:
        raise AssertionError("the identity map's 2 MiB page must cover the guest memory")
    return bytes(image)

# Hang guard: after the first SIGALRM the timer keeps firing at this interval
# so a signal that slipped in just before KVM_RUN entered the kernel is
# followed by one that lands while it blocks.
_ALARM_REPEAT_S = 0.01
# Extra time a child process gets to start when the guard must run there.
_CHILD_STARTUP_ALLOWANCE_S = 10.0


# --- public data types ---------------------------------------------------------
class KvmError(Exception):
    """A failed KVM operation: which operation, errno and the OS message."""

    def __init__(self, operation: str, errno_: int, strerror: str | None = None):
        strerror = strerror or os.strerror(errno_)
        super().__init__(operation, errno_, strerror)
        self.operation = operation
        self.errno = errno_
        self.strerror = strerror

    def __str__(self) -> str:
        return f"{self.operation} failed: [Errno {self.errno}] {self.strerror}"


class Capability(NamedTuple):
    name: str
    number: int
    purpose: str


CAPABILITIES: tuple[Capability, ...] = (
    Capability("KVM_CAP_IRQCHIP", 0, "in-kernel interrupt controller emulation"),
    Capability("KVM_CAP_HLT", 1, "idle vCPUs halt in the kernel"),
    Capability("KVM_CAP_USER_MEMORY", 3, "guest RAM backed by user-space mappings"),
    Capability("KVM_CAP_NR_VCPUS", 9, "recommended vCPUs per VM"),
    Capability("KVM_CAP_NR_MEMSLOTS", 10, "memory slots for RAM, ROM and device BARs"),
    Capability("KVM_CAP_TSC_CONTROL", 60, "set the guest TSC frequency (snapshots, migration)"),
    Capability("KVM_CAP_MAX_VCPUS", 66, "hard limit of vCPUs per VM"),
    Capability("KVM_CAP_ENABLE_CAP_VM", 98, "per-VM feature switches via KVM_ENABLE_CAP"),
    Capability("KVM_CAP_CHECK_EXTENSION_VM", 105, "capability queries on the VM fd"),
    Capability("KVM_CAP_SPLIT_IRQCHIP", 121, "LAPIC in kernel, PIC/IOAPIC in user space (VMware's model)"),
    Capability("KVM_CAP_X2APIC_API", 129, "x2APIC IDs for guests with many vCPUs"),
    Capability("KVM_CAP_IMMEDIATE_EXIT", 136, "race-free kick of a running vCPU"),
    Capability("KVM_CAP_X86_DISABLE_EXITS", 143, "let HLT/PAUSE/MWAIT run without exits"),
    Capability("KVM_CAP_NESTED_STATE", 157, "save/restore nested guests (Hyper-V/VBS in the VM)"),
    Capability("KVM_CAP_X86_USER_SPACE_MSR", 188, "forward MSR accesses to user space"),
    Capability("KVM_CAP_X86_MSR_FILTER", 189, "choose which MSRs user space handles"),
    Capability("KVM_CAP_EXIT_HYPERCALL", 201, "hypercalls that exit to user space (bitmask)"),
    Capability("KVM_CAP_XSAVE2", 208, "full XSAVE state (AMX) for save/restore"),
)


class GuestRun(NamedTuple):
    """Outcome of running the smoke guest (real -> protected -> long mode).

    ok: the guest wrote 'R', 'P' and 'L' (STAGES) to port 0x3f8, in order
        and nothing else, then halted in long mode.
    exits: exit reason names in order; a full run is ("IO", "IO", "IO", "HLT").
    port, byte: port and data byte of the last I/O exit (a full run: 0x3f8
        and 0x4c, 'L'); byte is None for an `in` or missing data, both None
        when the guest did no port I/O.
    runs: KVM_RUN calls made (bounded by max_runs).
    duration_ns: from mapping guest memory to the last exit: setting up the
        vCPU and the KVM_RUN calls (module imports and the host's CPUID query
        happen before, the teardown after).
    problem: None when ok, else what went wrong, naming the stage: e.g.
        "stopped in protected mode: unexpected SHUTDOWN exit (the guest
        triple-faulted) after reaching real, protected", "timeout in long
        mode: ...", "guest wrote 0x41 ('A') to port 0x3f8 in real mode,
        expected 0x52 ('R')"; several problems are joined by "; ".
    stages: names of the stages whose progress byte arrived, in order; a
        full run is ("real", "protected", "long").
    stopped_in: None when the guest halted after reaching long mode; else the
        stage it was running when it stopped (exit, timeout or bound): the
        last stage reached, or "real", the reset state, when none was.  Each
        stage writes its byte first, so "protected" means the fault lies
        between 'P' and 'L': in the protected-mode code or its jump to long mode.
    """

    ok: bool
    exits: tuple[str, ...]
    port: int | None
    byte: int | None
    runs: int
    duration_ns: int
    problem: str | None
    stages: tuple[str, ...]
    stopped_in: str | None
    loop_ns: int | None = None


# --- the syscall seam ---------------------------------------------------------
def _raw_ioctl(fd: int, request: int, arg: int | bytearray = 0) -> int:
    """The single place that calls ioctl(2); tests replace it to inject faults.

    A bytearray argument is passed as a pointer and updated in place.
    """
    import fcntl

    # With an int or a (mutable) bytearray argument fcntl returns the ioctl's int result.
    return cast(int, fcntl.ioctl(fd, request, arg))


def _ioctl(fd: int, operation: str, request: int, arg: int | bytearray = 0) -> int:
    if fd < 0:  # closed object; fcntl would raise ValueError, not OSError
        raise KvmError(operation, errno.EBADF)
    try:
        return _raw_ioctl(fd, request, arg)
    except OSError as exc:
        raise KvmError(operation, exc.errno or errno.EIO, exc.strerror) from None


def _close_fd(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass  # already gone; closing is best effort


class KvmBackend:
    """The real implementation; tests use fakes with the same duck type."""

    def open_device(self, path: str = KVM_DEVICE) -> KvmHandle:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise KvmError("open", exc.errno or errno.EIO, exc.strerror) from None
        return KvmHandle(fd, path)


_Fd = TypeVar("_Fd", bound="_KvmFd")


class _KvmFd:
    """A KVM file descriptor that answers KVM_CHECK_EXTENSION. Context manager; close() is idempotent."""

    def __init__(self, fd: int):
        self._fd = fd

    def __enter__(self: _Fd) -> _Fd:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def check_extension(self, number: int) -> int:
        return _ioctl(self._fd, "KVM_CHECK_EXTENSION", KVM_CHECK_EXTENSION, number)

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            _close_fd(fd)


class KvmHandle(_KvmFd):
    """An open /dev/kvm (system ioctls)."""

    def __init__(self, fd: int, path: str = KVM_DEVICE):
        super().__init__(fd)
        self.path = path
        self._supported_cpuid: bytes | None = None

    def api_version(self) -> int:
        return _ioctl(self._fd, "KVM_GET_API_VERSION", KVM_GET_API_VERSION)

    def vcpu_mmap_size(self) -> int:
        return _ioctl(self._fd, "KVM_GET_VCPU_MMAP_SIZE", KVM_GET_VCPU_MMAP_SIZE)

    def supported_cpuid(self) -> bytes:
        """KVM_GET_SUPPORTED_CPUID as a struct kvm_cpuid2 (header and entries),
        ready for KVM_SET_CPUID2; asked once per handle."""
        if self._supported_cpuid is None:
            self._supported_cpuid = _get_supported_cpuid(self._fd)
        return self._supported_cpuid

    def create_vm(self) -> KvmVm:
        # The run area size is a system ioctl; fetch it now so the VM does not
        # need this handle later.  The VM keeps the handle only to ask it for
        # the supported CPUID when a guest runs (reopening the device if the
        # handle has been closed by then).
        mmap_size = self.vcpu_mmap_size()
        fd = _ioctl(self._fd, "KVM_CREATE_VM", KVM_CREATE_VM, 0)
        return KvmVm(fd, mmap_size, self.path, handle=self)


class KvmVm(_KvmFd):
    """A VM fd."""

    def __init__(self, fd: int, vcpu_mmap_size: int, device_path: str = KVM_DEVICE,
                 handle: KvmHandle | None = None):
        super().__init__(fd)
        self._vcpu_mmap_size = vcpu_mmap_size
        self._next_vcpu_id = 0  # vCPUs live as long as the VM, so ids are not reused
        self.device_path = device_path
        self._handle = handle  # not owned: never closed here

    def supported_cpuid(self) -> bytes:
        """The host's supported CPUID (see KvmHandle.supported_cpuid), from the
        handle that created this VM, or from the device opened again for it."""
        handle = self._handle
        if handle is not None and not handle.closed:
            return handle.supported_cpuid()
        with KvmBackend().open_device(self.device_path) as kvm:
            return kvm.supported_cpuid()

    def run_smoke_guest(
        self,
        code: bytes | None = None,
        *,
        max_runs: int = 16,
        timeout_s: float = 1.0,
    ) -> GuestRun:
        """Run the smoke guest and report its stages and exits (see GuestRun).

        `code` replaces the guest memory image (default: build_smoke_guest());
        it is loaded at GUEST_PHYS_ADDR and entered there in real mode, the
        rest of the GUEST_MEMORY_SIZE bytes zero.  The vCPU gets the host's
        supported CPUID, as a VMM gives it.

        The first call uses vCPU id 0; a repeated call on the same VM uses the
        next id, because KVM keeps a vCPU until its VM is destroyed.
        """
        if code is not None and not 0 < len(code) <= GUEST_MEMORY_SIZE:
            raise ValueError(f"guest code must be 1..{GUEST_MEMORY_SIZE} bytes")
        if max_runs < 1 or not timeout_s > 0:
            raise ValueError("max_runs must be >= 1 and timeout_s > 0")
        if self._fd < 0:
            raise KvmError("KVM_SET_USER_MEMORY_REGION", errno.EBADF)
        image = build_smoke_guest() if code is None else code
        _import_guest_modules()  # before the clock starts: the duration is the guest's
        try:
            guard = _AlarmGuard(timeout_s)
            return _run_session(self, guard, image, self.supported_cpuid(), max_runs)
        except _GuardUnavailable as exc:
            return _run_in_child(self.device_path, code, max_runs, timeout_s, str(exc))


def _import_guest_modules() -> None:
    """Import what a guest run needs, so no import lands inside the timed part.

    An import that cannot open its file (EMFILE under a low RLIMIT_NOFILE)
    is a KvmError("import", errno) like every other failure here."""
    try:
        import array  # noqa: F401
        import fcntl  # noqa: F401
        import mmap  # noqa: F401
        import signal  # noqa: F401
        import threading  # noqa: F401
    except OSError as exc:
        raise KvmError("import", exc.errno or errno.EIO, exc.strerror) from None


def _get_supported_cpuid(system_fd: int) -> bytes:
    """KVM_GET_SUPPORTED_CPUID on /dev/kvm, trimmed to the entries it filled."""
    header = struct.calcsize(CPUID2_HEADER_FORMAT)
    entry = struct.calcsize(CPUID_ENTRY2_FORMAT)
    for capacity in CPUID_ENTRIES_TRIED:
        buf = bytearray(header + capacity * entry)
        struct.pack_into(CPUID2_HEADER_FORMAT, buf, 0, capacity, 0)
        try:
            _ioctl(system_fd, "KVM_GET_SUPPORTED_CPUID", KVM_GET_SUPPORTED_CPUID, buf)
        except KvmError as exc:
            if exc.errno == errno.E2BIG and capacity != CPUID_ENTRIES_TRIED[-1]:
                continue
            raise
        nent = min(struct.unpack_from(CPUID2_HEADER_FORMAT, buf)[0], capacity)
        struct.pack_into(CPUID2_HEADER_FORMAT, buf, 0, nent, 0)
        return bytes(buf[:header + nent * entry])
    raise AssertionError("unreachable")


def cpuid_entries(cpuid: bytes) -> list[tuple[int, ...]]:
    """(function, index, flags, eax, ebx, ecx, edx) of each entry of a struct kvm_cpuid2."""
    header = struct.calcsize(CPUID2_HEADER_FORMAT)
    size = struct.calcsize(CPUID_ENTRY2_FORMAT)
    (nent, _padding) = struct.unpack_from(CPUID2_HEADER_FORMAT, cpuid)
    nent = min(nent, (len(cpuid) - header) // size)
    return [struct.unpack_from(CPUID_ENTRY2_FORMAT, cpuid, header + i * size)[:7] for i in range(nent)]


def offers_long_mode(cpuid: bytes) -> bool:
    """Whether a struct kvm_cpuid2 sets CPUID.80000001H:EDX.LM (KVM refuses EFER.LME without it)."""
    return any(function == CPUID_EXT_FEATURES and edx & CPUID_EDX_LM
               for function, _index, _flags, _eax, _ebx, _ecx, edx in cpuid_entries(cpuid))


# --- the hang guard ---------------------------------------------------------
class _GuestTimeout(Exception):
    """Raised from the SIGALRM handler to break out of a blocked KVM_RUN."""


class _GuardUnavailable(Exception):
    """SIGALRM cannot be used here (not the main thread, or a foreign C handler)."""


class _AlarmGuard:
    """Bounds KVM_RUN with SIGALRM (ITIMER_REAL) on the main thread.

    A signal arriving while KVM_RUN blocks in the guest makes the ioctl
    return EINTR (exit reason INTR).  What fcntl.ioctl then does depends on
    the Python version: 3.9-3.13 run the Python handler and raise
    InterruptedError (verified here); newer CPython retries ioctl on EINTR
    like PEP 475, so a handler that only set a flag would loop forever.  The
    handler therefore *raises* _GuestTimeout, which ends either variant, but
    only while `in_call` is set and at most once per call, so the exception
    cannot escape from unrelated code such as the cleanup.

    After the deadline the timer repeats every 10 ms: Python handlers run
    only between bytecodes, so a signal landing just before the syscall
    starts is consumed without interrupting it; the next one lands inside.
    The handler also sets kvm_run.immediate_exit, so any later KVM_RUN
    returns at once instead of entering the guest.

    The previous SIGALRM handler and ITIMER_REAL are restored on exit, the
    timer minus the time spent here (fired at once if already overdue).
    """

    def __init__(self, timeout_s: float):
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            raise _GuardUnavailable("signals work only on the main thread")
        self._signal = signal
        self.timeout_s = timeout_s
        self.expired = False
        self.in_call = False
        self.run_area: Optional[mmap.mmap] = None  # kvm_run mapping, for immediate_exit
        old = signal.getsignal(signal.SIGALRM)
        if old is None:  # installed from C: we could not put it back
            raise _GuardUnavailable("SIGALRM has a handler that Python cannot restore")
        self._old_handler = old
        self._old_timer = (0.0, 0.0)
        self._armed_at = 0.0

    def __enter__(self) -> _AlarmGuard:
        signal = self._signal
        try:
            signal.signal(signal.SIGALRM, self._on_alarm)
        except ValueError as exc:  # not the main thread of the main interpreter
            raise _GuardUnavailable(str(exc)) from None
        self._armed_at = time.monotonic()
        self._old_timer = signal.setitimer(
            signal.ITIMER_REAL, self.timeout_s, _ALARM_REPEAT_S
        )
        return self

    def __exit__(self, *exc_info: object) -> None:
        signal = self._signal
        self.in_call = False  # from here on the handler never raises
        signal.setitimer(signal.ITIMER_REAL, 0)
        # signal.signal() first runs any pending Python handler (ours, inert).
        signal.signal(signal.SIGALRM, self._old_handler)
        delay, interval = self._old_timer
        if delay > 0:
            remaining = delay - (time.monotonic() - self._armed_at)
            signal.setitimer(signal.ITIMER_REAL, max(remaining, 1e-6), interval)

    def _on_alarm(self, signum: int, frame: object) -> None:
        self.expired = True
        area = self.run_area
        if area is not None:
            try:
                area[RUN_IMMEDIATE_EXIT_OFFSET] = 1
            except (ValueError, TypeError, IndexError):
                pass  # mapping already closed
        if self.in_call:
            self.in_call = False  # raise at most once per call()
            raise _GuestTimeout

    def call(self, fn: Callable[[], object]) -> object:
        """Run fn; raise _GuestTimeout if the deadline passes before or during it."""
        if self.expired:
            raise _GuestTimeout
        self.in_call = True
        try:
            return fn()
        finally:
            self.in_call = False


# --- decoding kvm_run ------------------------------------------------------------
class _ExitInfo:
    """One decoded exit; the I/O fields are None for other exit reasons."""

    __slots__ = ("reason", "name", "detail", "direction", "size", "port", "count", "data")

    def __init__(self, reason: int, name: str, detail: str, direction: int | None = None,
                 size: int | None = None, port: int | None = None,
                 count: int | None = None, data: bytes | None = None):
        self.reason, self.name, self.detail = reason, name, detail
        self.direction, self.size, self.port = direction, size, port
        self.count, self.data = count, data


def _exit_name(reason: int) -> str:
    return EXIT_REASONS.get(reason, f"UNKNOWN({reason})")


def _decode_exit(run: Buffer) -> _ExitInfo:
    """Decode exit_reason and the relevant union member of a kvm_run buffer."""
    (reason,) = struct.unpack_from(RUN_EXIT_REASON_FORMAT, run, RUN_EXIT_REASON_OFFSET)
    name = _exit_name(reason)
    if reason == _EXIT_IO:
        return _decode_io(run, reason, name)
    return _ExitInfo(reason, name, _exit_detail(run, reason, name))


def _decode_io(run: Buffer, reason: int, name: str) -> _ExitInfo:
    direction, size, port, count, data_offset = struct.unpack_from(
        RUN_IO_FORMAT, run, RUN_UNION_OFFSET
    )
    end = data_offset + size * count
    data = bytes(run[data_offset:end]) if end <= len(run) else None
    verb = "out" if direction == KVM_EXIT_IO_OUT else "in"
    detail = f"{verb} port {port:#x}, size {size}, count {count}"
    return _ExitInfo(reason, name, detail, direction, size, port, count, data)


def _exit_detail(run: Buffer, reason: int, name: str) -> str:
    union = RUN_UNION_OFFSET
    if name == "FAIL_ENTRY":
        hw_reason, cpu = struct.unpack_from(RUN_FAIL_ENTRY_FORMAT, run, union)
        return f"hardware_entry_failure_reason {hw_reason:#x} on cpu {cpu}"
    if name == "INTERNAL_ERROR":
        suberror, _ndata = struct.unpack_from(RUN_INTERNAL_FORMAT, run, union)
        what = INTERNAL_SUBERRORS.get(suberror, "unknown")
        return f"suberror {suberror} ({what})"
    if name == "UNKNOWN":
        (hw_reason,) = struct.unpack_from(RUN_U64_FORMAT, run, union)
        return f"hardware_exit_reason {hw_reason:#x}"
    if name == "MMIO":
        (addr,) = struct.unpack_from(RUN_U64_FORMAT, run, union)
        return f"guest-physical address {addr:#x} is not RAM"
    if name == "EXCEPTION":
        vector, code = struct.unpack_from(RUN_EXCEPTION_FORMAT, run, union)
        return f"exception {vector}, error code {code:#x}"
    if name == "SYSTEM_EVENT":
        (event,) = struct.unpack_from(RUN_SYSTEM_EVENT_FORMAT, run, union)
        return f"event type {event}"
    if name == "SHUTDOWN":
        return "the guest triple-faulted"
    return f"exit reason {reason}"


# --- judging the exits -----------------------------------------------------------
def _describe_byte(value: int) -> str:
    char = chr(value)
    return f"{value:#04x} ({char!r})" if char.isprintable() else f"{value:#04x}"


def _stage(stages: list[str]) -> str:
    """The stage the guest is running: the last one reached, else real (the reset state)."""
    return stages[-1] if stages else STAGE_NAMES[0]


def _mode(stages: list[str]) -> str:
    stage = _stage(stages)
    return "the workload stage" if stage == "workload" else f"{stage} mode"


def _progress(stages: list[str]) -> str:
    return f"after reaching {', '.join(stages)}" if stages else "before its first progress byte"


def _io_problem(info: _ExitInfo, stages: list[str], loop_done: bool) -> str | None:
    """None if this I/O exit is the next progress byte (a stage's, or the loop's end), else what is wrong with it."""
    where = _mode(stages)
    if info.port != SMOKE_PORT:
        return f"guest wrote to port {info.port:#x} in {where}, expected {SMOKE_PORT:#x}"
    if info.direction != KVM_EXIT_IO_OUT or info.size != 1 or info.count != 1:
        return (f"unexpected I/O in {where} ({info.detail}), "
                f"expected a one-byte out to {SMOKE_PORT:#x}")
    if info.data is None:
        return "the I/O data offset points outside the kvm_run mapping"
    if len(stages) == len(STAGES):
        if info.data[0] == LOOP_DONE_BYTE and not loop_done:
            return None
        return f"unexpected extra I/O exit in {where}: {info.detail}, byte {_describe_byte(info.data[0])}"
    stage, expected = STAGES[len(stages)]
    if info.data[0] != expected:
        return (f"guest wrote {_describe_byte(info.data[0])} to port {info.port:#x} in {where}, "
                f"expected {_describe_byte(expected)}, the {stage}-mode progress byte")
    return None


class _Outcome:
    __slots__ = ("exits", "port", "byte", "runs", "problem", "stages", "stopped_in", "loop_ns")

    def __init__(self, exits: tuple[str, ...], port: int | None, byte: int | None,
                 runs: int, problem: str | None, stages: tuple[str, ...], stopped_in: str | None,
                 loop_ns: int | None):
        self.exits, self.port, self.byte, self.runs, self.problem = (
            exits, port, byte, runs, problem)
        self.stages, self.stopped_in, self.loop_ns = stages, stopped_in, loop_ns


def _drive_guest(
    run_once: Callable[[], None], run_area: Buffer, max_runs: int, timeout_s: float
) -> _Outcome:
    """Call run_once() (one KVM_RUN) until HLT, an unexpected exit or the bound.

    Each correct progress byte on port 0x3f8 advances the stage; the first
    wrong I/O is kept as a problem and the guest goes on (port I/O is
    harmless).  run_once raises _GuestTimeout when the deadline passes and
    InterruptedError when an unrelated signal cut KVM_RUN short (retried).
    """
    exits: list[str] = []
    stages: list[str] = []
    problems: list[str] = []
    io_problem = False
    port = byte = None
    loop_ns: int | None = None
    finished = False
    runs = 0
    while runs < max_runs:
        runs += 1
        started = time.perf_counter_ns()
        try:
            run_once()
        except _GuestTimeout:
            problems.append(f"timeout in {_mode(stages)}: the guest did not halt within {timeout_s:g} s "
                            f"(KVM_RUN interrupted after {len(exits)} exit(s)) {_progress(stages)}")
            break
        except InterruptedError:
            continue  # a foreign signal interrupted KVM_RUN; run again
        elapsed = time.perf_counter_ns() - started
        info = _decode_exit(run_area)
        exits.append(info.name)
        if info.reason == _EXIT_IO:
            port = info.port
            byte = info.data[0] if info.direction == KVM_EXIT_IO_OUT and info.data else None
            problem = _io_problem(info, stages, loop_ns is not None)
            if problem is None and len(stages) == len(STAGES):
                loop_ns = elapsed  # this KVM_RUN ran the loop and nothing else
            elif problem is None:
                stages.append(STAGES[len(stages)][0])
            elif not io_problem:
                problems.append(problem)
                io_problem = True
            continue
        if info.reason == _EXIT_HLT:
            finished = len(stages) == len(STAGES) and loop_ns is not None
            if not finished:
                why = _HALT_MEANS.get(len(stages), "")
                problems.append(f"stopped in {_mode(stages)}: the guest halted{why} {_progress(stages)}")
            break
        problems.append(f"stopped in {_mode(stages)}: unexpected {info.name} exit "
                        f"({info.detail}) {_progress(stages)}")
        break
    else:
        problems.append(f"stopped in {_mode(stages)}: the guest did not halt within "
                        f"{max_runs} KVM_RUN calls {_progress(stages)}")
    stopped_in = None if finished else _stage(stages)
    return _Outcome(tuple(exits), port, byte, runs, "; ".join(problems) or None,
                    tuple(stages), stopped_in, loop_ns)


# What a halt means where the standard image halts only on a failed check.
_HALT_MEANS = {
    3: " (lock cmpxchg16b did not swap the 16 bytes as it must)",
    4: " before its loop ended",
}


# --- one guest run: resources and their cleanup ---------------------------------
def _guest_memory(size: int, image: bytes, cleanup: contextlib.ExitStack) -> int:
    """The address of page-aligned guest RAM that starts with `image`: an array one page larger than `size`,
    addressed through array.buffer_info() (documented for ioctl use; ctypes, the usual way to an address,
    costs about 2 ms of every run's start-up).  The array lives until the cleanup ends."""
    import mmap
    from array import array

    page = mmap.PAGESIZE
    try:
        memory = array("B", bytes(size + page))
    except MemoryError:
        raise KvmError("guest memory", errno.ENOMEM, "cannot allocate the guest's memory") from None
    start = memory.buffer_info()[0]
    offset = -start % page
    memory[offset:offset + len(image)] = array("B", image)
    cleanup.callback(memory.buffer_info)  # holds the array until the slot is gone: never resized meanwhile
    return start + offset


def _map_vcpu(fd: int, size: int) -> mmap.mmap:
    import mmap

    try:
        # mmap dup()s the fd; the copy is closed with the mapping.
        return mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    except OSError as exc:
        raise KvmError("mmap", exc.errno or errno.ENOMEM, exc.strerror) from None
    except ValueError as exc:  # e.g. a size of 0 from KVM_GET_VCPU_MMAP_SIZE
        raise KvmError("mmap", errno.EINVAL, str(exc)) from None


def _prepare_vcpu(vm: KvmVm, image: bytes, cpuid: bytes, cleanup: contextlib.ExitStack) -> Tuple[int, mmap.mmap]:
    """Memory, slot 0, vCPU, its kvm_run mapping, CPUID and registers; each
    resource registers its undo."""
    _set_slot(vm._fd, GUEST_MEMORY_SIZE, _guest_memory(GUEST_MEMORY_SIZE, image, cleanup))
    # Deleting the slot (size 0) lets the VM run a guest again later.
    cleanup.callback(_delete_slot, vm._fd)
    vcpu_fd = _ioctl(vm._fd, "KVM_CREATE_VCPU", KVM_CREATE_VCPU, vm._next_vcpu_id)
    cleanup.callback(_close_fd, vcpu_fd)
    vm._next_vcpu_id += 1
    run_area = _map_vcpu(vcpu_fd, vm._vcpu_mmap_size)
    cleanup.callback(run_area.close)
    _ioctl(vcpu_fd, "KVM_SET_CPUID2", KVM_SET_CPUID2, bytearray(cpuid))
    _set_real_mode_registers(vcpu_fd)
    return vcpu_fd, run_area


def _set_slot(vm_fd: int, size: int, address: int) -> None:
    region = bytearray(struct.pack(MEMORY_REGION_FORMAT, GUEST_SLOT, 0,
                                   GUEST_PHYS_ADDR, size, address))
    _ioctl(vm_fd, "KVM_SET_USER_MEMORY_REGION", KVM_SET_USER_MEMORY_REGION, region)


def _delete_slot(vm_fd: int) -> None:
    try:
        _set_slot(vm_fd, 0, 0)
    except KvmError:
        pass  # the VM may be closed already; its slots die with it


def _set_real_mode_registers(vcpu_fd: int) -> None:
    """CS base 0 / selector 0 (rest of the reset state kept), RIP 0x1000."""
    sregs = bytearray(struct.calcsize(SREGS_FORMAT))
    _ioctl(vcpu_fd, "KVM_GET_SREGS", KVM_GET_SREGS, sregs)
    _base, limit, _selector = struct.unpack_from(SEGMENT_HEAD_FORMAT, sregs, SREGS_CS_OFFSET)
    struct.pack_into(SEGMENT_HEAD_FORMAT, sregs, SREGS_CS_OFFSET, 0, limit, 0)
    _ioctl(vcpu_fd, "KVM_SET_SREGS", KVM_SET_SREGS, sregs)
    values = [0] * 18
    values[REGS_RIP_INDEX] = GUEST_PHYS_ADDR
    values[REGS_RFLAGS_INDEX] = GUEST_RFLAGS
    _ioctl(vcpu_fd, "KVM_SET_REGS", KVM_SET_REGS, bytearray(struct.pack(REGS_FORMAT, *values)))


def _run_vcpu(vcpu_fd: int, guard: _AlarmGuard) -> None:
    """One KVM_RUN under the guard; EINTR becomes _GuestTimeout after the deadline."""
    try:
        guard.call(lambda: _raw_ioctl(vcpu_fd, KVM_RUN, 0))
    except InterruptedError:
        if guard.expired:
            raise _GuestTimeout from None
        raise  # a foreign signal: _drive_guest runs again
    except OSError as exc:
        raise KvmError("KVM_RUN", exc.errno or errno.EIO, exc.strerror) from None


def _run_session(vm: KvmVm, guard: _AlarmGuard, image: bytes, cpuid: bytes,
                 max_runs: int) -> GuestRun:
    start = time.perf_counter_ns()
    # ExitStack runs every registered undo, in reverse, even if one fails.
    with contextlib.ExitStack() as cleanup:
        vcpu_fd, run_area = _prepare_vcpu(vm, image, cpuid, cleanup)
        with guard:  # leaves before the mapping is closed
            guard.run_area = run_area
            outcome = _drive_guest(lambda: _run_vcpu(vcpu_fd, guard), run_area,
                                  max_runs, guard.timeout_s)
        duration = time.perf_counter_ns() - start
    problem = outcome.problem
    if outcome.stopped_in == "protected" and not offers_long_mode(cpuid):
        problem = (f"{problem}; KVM_GET_SUPPORTED_CPUID offers no long mode "
                   "(CPUID.80000001H:EDX.LM clear), so the guest may not set EFER.LME")
    return GuestRun(problem is None, outcome.exits, outcome.port, outcome.byte, outcome.runs,
                    duration, problem, outcome.stages, outcome.stopped_in, outcome.loop_ns)


# --- fallback off the main thread ---------------------------------------------------
# The child imports this package from where the parent found it (isolated mode: no user site, no PYTHONPATH).
_CHILD_BOOT = (
    "import sys\n"
    "sys.path.insert(0, sys.argv[1])\n"
    "from kvmready.kvmapi import _child_main\n"
    "_child_main(sys.argv[2:])\n"
)


def _run_in_child(path: str, code: bytes | None, max_runs: int, timeout_s: float,
                  why: str) -> GuestRun:
    """Run the guest in a fresh VM in a child process, whose main thread can
    use the SIGALRM guard; the parent kills the child if even that overruns.
    (A VM cannot be shared: KVM ties it to the process that created it.)

    When the child fails or is killed nothing is known of the guest's
    progress: the result has no stages and stopped_in "real"."""
    try:
        import json
        import subprocess
        import sys
    except OSError as exc:  # EMFILE: no fd left to read the module
        raise KvmError("import", exc.errno or errno.EIO, exc.strerror) from None

    start = time.perf_counter_ns()
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    argv = [sys.executable, "-I", "-S", "-c", _CHILD_BOOT, package_parent,
            path, "" if code is None else code.hex(), str(max_runs), repr(timeout_s)]

    def failed(problem: str) -> GuestRun:
        return GuestRun(False, (), None, None, 0, time.perf_counter_ns() - start,
                        f"{problem} (guest run in a child process because {why})",
                        (), STAGE_NAMES[0])

    try:
        done = subprocess.run(argv, capture_output=True, timeout=timeout_s
                              + _CHILD_STARTUP_ALLOWANCE_S, check=False)
    except subprocess.TimeoutExpired:
        return failed(f"timeout in an unknown stage: the child running the guest overran "
                      f"{timeout_s:g} s and was killed")
    except OSError as exc:  # pipe, fork or exec: EMFILE, EAGAIN, ENOMEM ... are ours, not the host's
        raise KvmError("start child process", exc.errno or errno.EIO, exc.strerror) from None
    except ValueError as exc:
        return failed(f"could not start the child process: {exc}")
    try:
        reply = json.loads(done.stdout)
    except ValueError:
        last = (done.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
        return failed(f"the child process failed (exit status {done.returncode}): {last}")
    if "error" in reply:
        raise KvmError(*reply["error"])
    run = reply["run"]
    run["exits"] = tuple(run["exits"])
    run["stages"] = tuple(run["stages"])
    return GuestRun(**run)


def _child_main(args: list[str]) -> None:
    import json
    import sys

    path, code_hex, max_runs, timeout_s = args
    try:
        with KvmBackend().open_device(path) as kvm, kvm.create_vm() as vm:
            run = vm.run_smoke_guest(bytes.fromhex(code_hex) if code_hex else None,
                                     max_runs=int(max_runs), timeout_s=float(timeout_s))
        reply: dict[str, Any] = {"run": run._asdict()}
    except KvmError as exc:
        reply = {"error": [exc.operation, exc.errno, exc.strerror]}
    sys.stdout.write(json.dumps(reply))
