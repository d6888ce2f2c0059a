"""Firmware for a board from a compiled model: build (ELF/BIN/HEX), host twin library, flashing."""

from divqat_tvm.device.build import FirmwareBuild, build_firmware
from divqat_tvm.device.config import DefenseSpec, parse_defense

__all__ = ["DefenseSpec", "FirmwareBuild", "build_firmware", "parse_defense"]
