"""SNMP polling of the devices at a clinic: router, LTE modem, UPS (docs/snmp.md)."""

from agent.snmp.config import DeviceSpec
from agent.snmp.poller import DevicePoller, Poll
from agent.snmp.profiles import ProfileError, Profiles

__all__ = ["DeviceSpec", "DevicePoller", "Poll", "ProfileError", "Profiles"]
