"""The rewards app's tables, one module per part: `core` (contributors, devices, verified work,
flags), `jobs` (collection targets, fetch jobs, collected rows), and the parts built on it."""
from .core import MONEY, CommunityShare, Contributor, Device, Flag, Heartbeat, WorkCredit  # noqa: F401
from .jobs import CollectedRow, CollectionTarget, FetchJob, JobAssignment, NodeRequestSignature  # noqa: F401
