"""Flap detection, after Nagios: the percent state change over the last 21 observations, each change
weighted from 0.75 (oldest) to 1.25 (newest), so that recent changes count more.

Nagios observes at each check. A clinic's link is observed here in fixed slots (StateRules.flap_slot_s,
one minute): a slot is bad when the link was cut in it at all (an outage record, or central probes
failing twice in a row). A 20 s cut every 3 minutes makes one bad slot in three, a percent change
of ~60 %; a steady outage makes two changes however long it lasts.
"""

from __future__ import annotations

from collections.abc import Sequence

WINDOW = 21  # observations; 20 pairs between them


def percent_state_change(bad: Sequence[bool]) -> float:
    """Nagios' weighted percent state change of the last WINDOW observations (oldest first)."""
    window = list(bad)[-WINDOW:]
    if len(window) < 2:
        return 0.0
    pairs = WINDOW - 1
    # Pair i of `pairs` (1 = oldest) weighs 0.75 + 0.5 * (i - 1) / (pairs - 1); a short history is the
    # newest end of a full window.
    offset = pairs - (len(window) - 1)
    total = 0.0
    for i in range(1, len(window)):
        if window[i] != window[i - 1]:
            total += 0.75 + 0.5 * (offset + i - 1) / (pairs - 1)
    return total * 100 / pairs
