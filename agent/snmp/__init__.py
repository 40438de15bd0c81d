"""SNMP polling of the devices at a clinic: router, LTE modem, UPS (docs/snmp.md).

Names are imported on first use, so a config without `devices:` never loads the SNMP client.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_WHERE = {"DeviceSpec": "agent.snmp.config", "Engines": "agent.snmp.client", "DevicePoller": "agent.snmp.poller", "Poll": "agent.snmp.poller",
          "ProfileError": "agent.snmp.profiles", "Profiles": "agent.snmp.profiles"}
__all__ = list(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'agent.snmp' has no attribute {name!r}")
