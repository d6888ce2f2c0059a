"""Real-board firmware run without the board: the ELF built for an STM32 board executes in the unicorn engine
with the registers it touches modelled, so the register-level code (board_stm32.c: clocks, GPIO, the USART)
runs in CI and answers queries through the ordinary `DeviceLink`.

Modelled: flash and RAM from the board file; the USART as a byte queue in each direction -- v2 layout (F7, H7,
L4 USART/LPUART: ISR, ICR, RDR, TDR) or v1 (F4: SR, DR); every other peripheral register (RCC, GPIO, PWR) as
plain memory (the firmware runs at the reset clock and polls no ready flag; a read returns what was written);
the System Control Space: CPUID of the board's core, VTOR/CPACR/SHCSR as memory, DWT CYCCNT counting (so the
firmware's timer is the DWT, whose 32-bit wrap it extends without an interrupt), SysTick counting down. The
harness records what the firmware wrote to the USART's configuration (CR1 enable bits, BRR) for tests to check.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

from divqat_tvm.device.build import FirmwareBuild
from divqat_tvm.device.protocol import DeviceLink
from divqat_tvm.errors import DeviceError

PAGE = 0x1000
#: CPUID per core (implementer Arm, the core's part number)
CPUIDS = {"cortex-m4": 0x410FC241, "cortex-m7": 0x411FC272, "cortex-m3": 0x412FC231, "cortex-m33": 0x410FD213}
#: peripheral windows mapped as plain memory (RCC, GPIO, PWR of F4/F7/L4 at 0x4000_0000.., L4 GPIO, H7 AHB4)
PERIPHERAL_RAM = [(0x40000000, 0x30000), (0x48000000, 0x2000), (0x58020000, 0x5000)]
SCS_BASE, SCS_SIZE = 0xE0000000, 0x100000


def _pages(base: int, size: int) -> set[int]:
    return set(range(base & ~(PAGE - 1), (base + size + PAGE - 1) & ~(PAGE - 1), PAGE))


def _runs(pages: set[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for p in sorted(pages):
        if out and out[-1][0] + out[-1][1] == p:
            out[-1] = (out[-1][0], out[-1][1] + PAGE)
        else:
            out.append((p, PAGE))
    return out


def load_segments(elf: Path) -> list[tuple[int, bytes]]:
    """(load address, bytes) of each PT_LOAD segment of a 32-bit little-endian ELF (at its LMA: flash)."""
    data = elf.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 1 or data[5] != 1:
        raise DeviceError(f"{elf} is not a 32-bit little-endian ELF.", "Build the firmware with `divqat-tvm build`.")
    (phoff,) = struct.unpack_from("<I", data, 28)
    phentsize, phnum = struct.unpack_from("<HH", data, 42)
    segs = []
    for i in range(phnum):
        ptype, off, _vaddr, paddr, filesz, _memsz = struct.unpack_from("<6I", data, phoff + i * phentsize)
        if ptype == 1 and filesz:
            segs.append((paddr, data[off : off + filesz]))
    return segs


@dataclass
class UartModel:
    """The USART as the firmware sees it; `rx` the host's bytes on their way in, `tx` the firmware's answers."""

    layout: str  # "v1" or "v2"
    rx: bytearray = field(default_factory=bytearray)
    tx: bytearray = field(default_factory=bytearray)
    regs: dict[int, int] = field(default_factory=dict)
    writes: list[tuple[int, int]] = field(default_factory=list)  # (offset, value) of configuration writes

    # (status, data-read, data-write, CR1, BRR) offsets and the CR1 enable bits per layout
    def offsets(self) -> tuple[int, int, int, int, int, int]:
        if self.layout == "v1":
            return 0x00, 0x04, 0x04, 0x0C, 0x08, (1 << 13) | (1 << 3) | (1 << 2)
        return 0x1C, 0x24, 0x28, 0x00, 0x0C, (1 << 0) | (1 << 3) | (1 << 2)

    def enabled(self) -> bool:
        _, _, _, cr1, _, bits = self.offsets()
        return self.regs.get(cr1, 0) & bits == bits

    def read(self, _uc, off: int, _size: int, _user) -> int:
        status, rdr, _, _, _, _ = self.offsets()
        if off == status:
            return (1 << 7) | (1 << 6) | ((1 << 5) if (self.rx and self.enabled()) else 0)  # TXE | TC | RXNE
        if off == rdr:
            return self.rx.pop(0) if self.rx else 0
        return self.regs.get(off, 0)

    def write(self, _uc, off: int, _size: int, value: int, _user) -> None:
        _, _, tdr, _, _, _ = self.offsets()
        if off == tdr and (self.layout == "v2" or off == 0x04):
            if not self.enabled():
                raise DeviceError("the firmware wrote to the USART before enabling it.", "Fix board_stm32.c.")
            self.tx.append(value & 0xFF)
            return
        self.regs[off] = value
        self.writes.append((off, value))


class SystemControl:
    """CPUID, DWT CYCCNT (advancing with every read), SysTick, and the rest of the SCS as memory."""

    def __init__(self, cpuid: int) -> None:
        self.cpuid = cpuid
        self.mem: dict[int, int] = {}
        self.cyccnt = 0
        self.cvr = 0xFFFFFF

    def read(self, _uc, off: int, _size: int, _user) -> int:
        addr = SCS_BASE + off
        if addr == 0xE000ED00:
            return self.cpuid
        if addr == 0xE0001004:  # DWT_CYCCNT
            self.cyccnt = (self.cyccnt + 64) & 0xFFFFFFFF
            return self.cyccnt
        if addr == 0xE000E018:  # SYST_CVR
            self.cvr = (self.cvr - 64) & 0xFFFFFF
            return self.cvr
        if addr == 0xE000ED04:  # ICSR: nothing pending
            return 0
        return self.mem.get(addr, 0)

    def write(self, _uc, off: int, _size: int, value: int, _user) -> None:
        addr = SCS_BASE + off
        if addr == 0xE0001004:
            self.cyccnt = value
        self.mem[addr] = value


class UnicornBoard:
    """One firmware ELF of an STM32 board running in unicorn; also the byte transport of a `DeviceLink`.

    Args:
        fw: a firmware build for a board whose UART is an STM32 USART/LPUART (v1 or v2 layout).
        chunk: instructions emulated per step while waiting for output.
    """

    def __init__(self, fw: FirmwareBuild, chunk: int = 200_000) -> None:
        try:
            import unicorn as U
            from unicorn import arm_const as A
        except ImportError as e:
            raise DeviceError(
                "the unicorn engine is not installed.",
                "pip install 'divqat-tvm[harness]' (unicorn==2.1.4), or run scripts/setup.sh.",
            ) from e
        kind = fw.board.uart.get("kind", "")
        if not kind.startswith("stm32"):
            raise DeviceError(
                f"board '{fw.board.name}' has UART kind '{kind}'; the harness models STM32 USARTs only.",
                "Run QEMU boards with QemuRunner.",
            )
        self.U, self.A = U, A
        self.fw = fw
        self.chunk = chunk
        self.uart = UartModel("v1" if kind == "stm32-usart-v1" else "v2")
        self.scs = SystemControl(CPUIDS.get(fw.core.name, 0x410FC241))
        cpu = {
            "cortex-m4": A.UC_CPU_ARM_CORTEX_M4,
            "cortex-m7": A.UC_CPU_ARM_CORTEX_M7,
            "cortex-m3": A.UC_CPU_ARM_CORTEX_M3,
            "cortex-m33": A.UC_CPU_ARM_CORTEX_M33,
        }[fw.core.name]
        uc = U.Uc(U.UC_ARCH_ARM, U.UC_MODE_THUMB | U.UC_MODE_MCLASS)
        uc.ctl_set_cpu_model(cpu)
        b = fw.board
        for base, size in _runs(_pages(b.flash.origin, b.flash.length)) + _runs(_pages(b.ram.origin, b.ram.length)):
            uc.mem_map(base, size)
        uart_base = int(str(b.uart["base"]), 0)
        periph = set().union(*(_pages(a, s) for a, s in PERIPHERAL_RAM)) - {uart_base & ~(PAGE - 1)}
        for base, size in _runs(periph):
            uc.mem_map(base, size)
        uc.mmio_map(uart_base & ~(PAGE - 1), PAGE, self._uart_read, None, self._uart_write, None)
        self._uart_off = uart_base & (PAGE - 1)
        uc.mmio_map(SCS_BASE, SCS_SIZE, self.scs.read, None, self.scs.write, None)
        for addr, blob in load_segments(fw.elf):
            uc.mem_write(addr, blob)
        sp, reset = struct.unpack("<II", uc.mem_read(b.flash.origin, 8))
        uc.reg_write(A.UC_ARM_REG_SP, sp)
        self.pc = reset | 1
        self.uc = uc
        self.instructions = 0

    def _uart_read(self, uc, off, size, user) -> int:
        return self.uart.read(uc, off - self._uart_off, size, user) if off >= self._uart_off else 0

    def _uart_write(self, uc, off, size, value, user) -> None:
        if off >= self._uart_off:
            self.uart.write(uc, off - self._uart_off, size, value, user)

    def run(self, instructions: int) -> None:
        """Emulate up to `instructions` more instructions from where the firmware stopped."""
        try:
            self.uc.emu_start(self.pc, 0xFFFFFFFF, count=instructions)
        except self.U.UcError as e:
            pc = self.uc.reg_read(self.A.UC_ARM_REG_PC)
            raise DeviceError(
                f"the firmware stopped in the harness at pc {pc:#010x}: {e}.",
                "arm-none-eabi-addr2line -e firmware.elf PC names the code.",
            ) from e
        self.pc = self.uc.reg_read(self.A.UC_ARM_REG_PC) | 1
        self.instructions += instructions

    # -- Transport ------------------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        self.uart.rx += data

    def read(self, n: int, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while not self.uart.tx:
            self.run(self.chunk)
            if time.monotonic() > deadline:
                break
        out = bytes(self.uart.tx[:n])
        del self.uart.tx[:n]
        return out

    def close(self) -> None:
        pass

    def describe_failure(self) -> str:
        return f"(harness: {self.instructions} instructions run, pc {self.pc & ~1:#010x})"

    def link(self, timeout: float = 60.0) -> DeviceLink:
        """A DeviceLink over this harness, the boot banner read."""
        link = DeviceLink(self, timeout=timeout)
        link.wait_hello(timeout)
        return link
