"""What a ups process prints, and what other processes can read of its command line, holds no credential.

- `redacting_output()` puts every line written to `sys.stdout`/`sys.stderr` through `redact` (results, logs,
  warnings, progress bars, and `--debug` tracebacks, which are printed while it is in place).
- `hide_command_line()` overwrites this process's own argv in memory with its redacted form, so `ps` and
  `/proc/PID/cmdline` stop showing a credential typed on the command line once the process has started (as the
  MySQL client does with `-pPASSWORD`); `sys.argv` gets the redacted form too, so a Lightning DDP re-exec or W&B's
  recorded command line never see one.
Standard library only: the CLI's cold path imports this.
"""

from __future__ import annotations

import contextlib
import io
import sys

from ups.spec.redact import redact


class RedactingStream(io.TextIOBase):
    """A text stream that writes whole lines (up to a `\\n` or a progress bar's `\\r`), each redacted."""

    def __init__(self, raw) -> None:
        super().__init__()
        self.raw = raw
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        cut = max(self._pending.rfind("\n"), self._pending.rfind("\r"))
        if cut >= 0:
            done, self._pending = self._pending[: cut + 1], self._pending[cut + 1 :]
            self.raw.write(redact(done))
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self.raw.write(redact(self._pending))
            self._pending = ""
        self.raw.flush()

    def isatty(self) -> bool:
        return self.raw.isatty()

    def fileno(self) -> int:
        return self.raw.fileno()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self):  # type: ignore[override]
        return getattr(self.raw, "encoding", "utf-8")

    @property
    def errors(self):  # type: ignore[override]
        return getattr(self.raw, "errors", "strict")


@contextlib.contextmanager
def redacting_output():
    """Redact everything this process prints to sys.stdout and sys.stderr while the block runs."""
    before = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = RedactingStream(before[0]), RedactingStream(before[1])
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        sys.stdout, sys.stderr = before


@contextlib.contextmanager
def redacted_argv():
    """`sys.argv` redacted while the block runs (around `wandb.init`, which records the command line)."""
    before = list(sys.argv)
    sys.argv[:] = [redact(a) for a in before]
    try:
        yield
    finally:
        sys.argv[:] = before


def hide_command_line(shown: list[str]) -> bool:
    """Overwrite this process's argv memory (what `ps` shows) with `shown`, NUL-padded. Linux only; returns False
    (and changes nothing) where the memory cannot be found or does not hold what `/proc/self/cmdline` says."""
    try:
        import ctypes

        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end (fields 48 and 49)
        with open("/proc/self/cmdline", "rb") as f:
            current = f.read()
        size = end - start
        if size <= 0 or len(current) != size:
            return False
        area = (ctypes.c_char * size).from_address(start)
        if area.raw != current:
            return False
        new = b"\0".join(a.encode() for a in shown)[: size - 1]
        ctypes.memmove(start, new + b"\0" * (size - len(new)), size)
        return True
    except (OSError, ValueError, IndexError, AttributeError):
        return False
