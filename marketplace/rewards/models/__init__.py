"""The rewards app's tables, one module per part: `core` (contributors, devices, verified work,
flags), `nodes` (bindings, device requests, daily roll-ups), `epochs` (epochs, amounts,
trees, root events, claims, community revenue)."""
from .core import MONEY, CommunityShare, Contributor, Device, Flag, Heartbeat, WorkCredit  # noqa: F401
from .nodes import (  # noqa: F401
    AddressWallet, BindingEvent, BindingNonce, DeviceDay, DeviceRequestSignature, PendingBinding,
)
from .epochs import (  # noqa: F401
    CommunityRevenue, Epoch, EpochAmount, EpochLeaf, EpochTree, HeldAmount, RewardClaim, RootEvent,
)
