"""The rewards app's tables, one module per part: `core` (contributors, devices, verified work,
flags), and the parts built on it."""
from .core import MONEY, CommunityShare, Contributor, Device, Flag, Heartbeat, WorkCredit  # noqa: F401
