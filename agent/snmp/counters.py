"""Counter and uptime arithmetic: wraps, resets and restarts told apart, never guessed over.

Pure functions, no I/O: the poller feeds them what the device said and when.
"""

from __future__ import annotations

from dataclasses import dataclass

TICKS_PER_S = 100  # TimeTicks are hundredths of a second
WRAP32 = 2**32
WRAP64 = 2**64


def counter_delta(previous: int, current: int, bits: int) -> int | None:
    """How far a counter advanced; None when it cannot be known.

    A 32-bit counter that went backwards wrapped once (at 100 Mbit/s ifInOctets wraps
    every 5.7 minutes). A 64-bit counter does not wrap in the life of a device, so
    going backwards means it was reset: no delta.
    """
    if current >= previous:
        return current - previous
    if bits == 32:
        return current + WRAP32 - previous
    return None


@dataclass(frozen=True)
class UptimeVerdict:
    state: str  # "first", "ok", "wrapped", "restarted"
    detail: str = ""


def uptime_verdict(previous_ticks: int | None, current_ticks: int, elapsed_s: float | None) -> UptimeVerdict:
    """Whether a device restarted between two readings of its uptime (TimeTicks, 32 bits).

    The uptime should have advanced by the time that passed. It restarted if it
    advanced clearly less (or went backwards) - unless the 32-bit value rolled over
    after 497 days, which lands exactly where the elapsed time says it should. The
    slack (10 s + 5 %) absorbs request latency and the device's clock drift.
    """
    if previous_ticks is None or elapsed_s is None:
        return UptimeVerdict("first")
    elapsed_ticks = max(elapsed_s, 0.0) * TICKS_PER_S
    expected = previous_ticks + elapsed_ticks
    slack = 10 * TICKS_PER_S + 0.05 * elapsed_ticks
    if abs(current_ticks - expected) <= slack:
        return UptimeVerdict("ok")
    if expected >= WRAP32 - slack and abs(current_ticks - (expected - WRAP32)) <= slack:
        return UptimeVerdict("wrapped", "uptime rolled over at 2^32 ticks (497 days); not a restart")
    if current_ticks < expected - slack:
        return UptimeVerdict("restarted", f"uptime {current_ticks / TICKS_PER_S:.0f} s, expected about "
                                          f"{expected / TICKS_PER_S:.0f} s")
    return UptimeVerdict("ok", "uptime advanced faster than the agent's clock")


def rate(previous: tuple[int, float], current: tuple[int, float], bits: int,
         ceiling_per_s: float | None = None) -> tuple[float | None, str]:
    """Per-second rate between two (value, monotonic seconds) readings, or (None, why not)."""
    elapsed = current[1] - previous[1]
    if elapsed <= 0:
        return None, "no time passed between readings"
    delta = counter_delta(previous[0], current[0], bits)
    if delta is None:
        return None, "counter went backwards (reset)"
    per_s = delta / elapsed
    if ceiling_per_s is not None and per_s > ceiling_per_s:
        # Faster than the interface can carry: the counter was reset (cleared, or a module
        # restarted) and what looks like a wrap is not one. Say nothing rather than invent.
        return None, "implausible jump (faster than the interface speed): counter reset"
    return per_s, ""
