"""A real board's serial port (pyserial) as a protocol transport.

The same transport talks to QEMU started with `-serial pty`, which is how it is tested without a board.
"""

from __future__ import annotations

from collections.abc import Callable

from divqat_tvm.errors import DeviceError


class SerialTransport:
    """pyserial port -> Transport. `failure` adds what the other end knows when the link breaks."""

    def __init__(self, port: str, baud: int = 115200, failure: Callable[[], str] | None = None) -> None:
        import serial  # pyserial

        self._failure = failure
        try:
            self.port = serial.Serial(port, baudrate=baud, timeout=0.1, write_timeout=10)
        except (serial.SerialException, OSError) as e:
            raise DeviceError(
                f"cannot open the serial port {port} ({e}).",
                "Check that the board is plugged in, the port name (ls /dev/ttyACM* /dev/ttyUSB*) "
                "and that you may open it (group dialout).",
            ) from e
        try:
            import termios
            import tty

            tty.setraw(self.port.fileno())  # no echo, no newline translation on ptys
            attrs = termios.tcgetattr(self.port.fileno())
            attrs[3] &= ~termios.ECHO
            termios.tcsetattr(self.port.fileno(), termios.TCSANOW, attrs)
        except Exception:
            pass

    def write(self, data: bytes) -> None:
        import serial

        try:
            self.port.write(data)
            self.port.flush()
        except (serial.SerialException, OSError) as e:
            raise DeviceError(
                f"writing to {self.port.port} failed ({e}). {self.describe_failure()}".strip(),
                "The board was unplugged or reset; reconnect it.",
            ) from e

    def read(self, n: int, timeout: float) -> bytes:
        import serial

        self.port.timeout = max(timeout, 1e-3)
        try:
            first = self.port.read(1)
            if not first:
                return b""
            waiting = self.port.in_waiting
            return first + (self.port.read(min(waiting, n - 1)) if waiting else b"")
        except (serial.SerialException, OSError) as e:
            raise DeviceError(
                f"reading from {self.port.port} failed ({e}). {self.describe_failure()}".strip(),
                "The board was unplugged or reset; reconnect it.",
            ) from e

    def close(self) -> None:
        try:
            self.port.close()
        except Exception:
            pass

    def describe_failure(self) -> str:
        return self._failure() if self._failure else ""
