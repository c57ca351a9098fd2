"""The rewards app's tables, one module per part: `core` (contributors, devices, verified work,
flags), and the parts built on it."""
from .core import MONEY, CommunityShare, Contributor, Device, Flag, Heartbeat, WorkCredit  # noqa: F401
from .epochs import (  # noqa: F401
    CommunityRevenue, Epoch, EpochAmount, EpochLeaf, EpochTree, HeldAmount, RewardClaim, RootEvent,
)
