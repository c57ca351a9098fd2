"""The rewards app's tables, one module per part: `core` (contributors, devices, verified work,
flags), `nodes` (bindings, device requests, daily roll-ups), `jobs` (collection targets, fetch
jobs, collected rows), `epochs` (epochs, amounts, trees, root events, claims, community revenue)."""
from .core import MONEY, CommunityShare, Contributor, Device, Flag, Heartbeat, WorkCredit  # noqa: F401
from .nodes import (  # noqa: F401
    AddressWallet, BindingEvent, BindingNonce, DeviceDay, DeviceRequestSignature, PendingBinding,
)
from .jobs import CollectedRow, CollectionTarget, FetchJob, JobAssignment  # noqa: F401
from .epochs import (  # noqa: F401
    CommunityRevenue, Epoch, EpochAmount, EpochLeaf, EpochTree, HeldAmount, RewardClaim, RootEvent,
)
