"""The rewards app's tables, one module per part: `core` (contributors, devices, verified work,
flags), `nodes` (bindings, device requests, daily roll-ups), and the parts built on it."""
from .core import MONEY, CommunityShare, Contributor, Device, Flag, Heartbeat, WorkCredit  # noqa: F401
from .nodes import (  # noqa: F401
    AddressWallet, BindingEvent, BindingNonce, DeviceDay, DeviceRequestSignature, PendingBinding,
)
