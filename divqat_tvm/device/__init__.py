"""Firmware for a board from a compiled model: build (ELF/BIN/HEX), emulator, wire protocol, host twin,
flashing, and footprint measurement. Front doors: `build_firmware`, `measure_footprint`."""

from divqat_tvm.device.build import FirmwareBuild, build_firmware
from divqat_tvm.device.footprint import measure_footprint

__all__ = ["FirmwareBuild", "build_firmware", "measure_footprint"]
