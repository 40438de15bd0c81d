"""The agent's clocks: wall time, monotonic time, and whether the wall clock can be trusted.

A Raspberry Pi has no real-time clock: after a power cut it boots in the past, and
NTP needs the link that may be down. Every record therefore carries the monotonic
time and the sync state; when the clock becomes trustworthy, the outbox re-times
what was taken before (`Outbox.fix_clock`).

Sync state comes from the kernel (`adjtimex()`: TIME_ERROR means unsynchronised;
ntpd, chrony, systemd-timesyncd and busybox ntpd all clear it once synced), or
from a marker file, or is assumed (boxes with a real-time clock).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal, Protocol

TIME_ERROR = 5
SyncCheck = Literal["kernel", "file", "assume"]


class Clock(Protocol):
    def wall_ms(self) -> int: ...
    def mono_ms(self) -> int: ...
    def synced(self) -> bool: ...


def kernel_synced() -> bool:
    """adjtimex(modes=0) reads the kernel clock state without changing it."""
    import ctypes  # only with this check; the process's own symbols hold libc's adjtimex (glibc and musl),
    # so ctypes.util's library search (shutil, tempfile, bz2, lzma: 0.9 MiB) is not needed

    libc = ctypes.CDLL(None, use_errno=True)
    timex = ctypes.create_string_buffer(512)  # struct timex is ~208 bytes; modes (first field) = 0
    state = libc.adjtimex(timex)
    return state not in (-1, TIME_ERROR)


def kernel_boot_id() -> str:
    """Identifies the kernel boot whose monotonic clock `mono` values belong to."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")
    except OSError:
        return "unknown"


class SystemClock:
    def __init__(self, check: SyncCheck = "kernel", marker: Path | None = None) -> None:
        self.check, self.marker = check, marker

    def wall_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def mono_ms(self) -> int:
        return time.monotonic_ns() // 1_000_000

    def synced(self) -> bool:
        if self.check == "assume":
            return True
        if self.check == "file":
            return self.marker is not None and self.marker.exists()
        return kernel_synced()


class ClockWatch:
    """Notices the moment the clock becomes trustworthy (so the outbox can be re-timed once)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.was_synced = clock.synced()

    def sync_label(self) -> str:
        return "ntp" if self.clock.synced() else "none"

    def became_synced(self) -> bool:
        now = self.clock.synced()
        changed = now and not self.was_synced
        self.was_synced = now
        return changed
