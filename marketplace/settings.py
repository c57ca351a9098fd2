"""Settings, read from the environment with safe defaults (see README, "Configuration").

DEBUG is off unless DJANGO_DEBUG=1; the dev launcher (scripts/dev run) turns it on. Without
DATABASE_URL the launcher and the test plugin start an embedded PostgreSQL and set it; without
CELERY_BROKER_URL the broker is kombu's SQLAlchemy transport on that same database.
"""
from pathlib import Path
import os
import warnings

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from marketplace.env import (
    env_bool, env_int, env_list, env_networks, key_address, refuse_dev_accounts, sqlalchemy_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent


DEBUG = env_bool("DJANGO_DEBUG", False)
DATA_DIR = Path(os.environ.get("DATA_DIR") or BASE_DIR / ".data")

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set. Set it to a long random string "
            "(or DJANGO_DEBUG=1 for local development)."
        )
    SECRET_KEY = "django-insecure-local-development-only"

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "marketplace.accounts",
    "marketplace.chain",
    "marketplace.catalog",
    "marketplace.orders",
    "marketplace.rewards",
    "marketplace.moderation",
    "marketplace.payments",
    "marketplace.outbox",
    "marketplace.limits",
    "marketplace.web",
]

MIDDLEWARE = [
    "marketplace.api.APIErrorMiddleware",  # first: it answers every /api/ error with the API's body
    "marketplace.security.ContentSecurityPolicyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "marketplace.urls"
WSGI_APPLICATION = "marketplace.wsgi.application"

_CONTEXT_PROCESSORS = [
    "django.template.context_processors.request",
    "django.contrib.auth.context_processors.auth",
    "django.contrib.messages.context_processors.messages",
]
TEMPLATES = [
    {   # the site's pages (Jinja2: see marketplace/web/jinja.py)
        "BACKEND": "django.template.backends.jinja2.Jinja2",
        "DIRS": [BASE_DIR / "frontend" / "jinja2"],
        "APP_DIRS": False,
        "OPTIONS": {"environment": "marketplace.web.jinja.environment", "context_processors": _CONTEXT_PROCESSORS},
    },
    {   # Django's own and third-party templates (the admin, the API docs)
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": _CONTEXT_PROCESSORS},
    },
]

# Database ------------------------------------------------------------------------------------
DATABASE_URL = os.environ.get("DATABASE_URL", "")
if not DATABASE_URL:
    raise ImproperlyConfigured(
        "DATABASE_URL is not set. Use scripts/dev run (it starts an embedded PostgreSQL) or set "
        "DATABASE_URL=postgresql://user:password@host:5432/marketplace."
    )
# A web thread keeps its connection an hour (checked before each request): connections that all
# ended after 60 s were all opened again at once, each a new PostgreSQL backend with cold caches
# and statements to prepare again, a burst of slow requests every minute (bench/README.md).
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 3600),
                                              conn_health_checks=True)}
# A database that is down must fail fast (health checks, pages), not hang a request.
DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 2)
# Prepared statements only where the code asks for one (`prepare=True` through marketplace/prepared.py:
# the search results' query, the heartbeat's, the session and user of every signed-in request, the
# review queue's). DATABASE_PREPARED_STATEMENTS=0 turns them off for a connection pooler
# that cannot keep them (PgBouncer in transaction mode before 1.21).
DATABASES["default"]["OPTIONS"].setdefault(
    "prepare_threshold", 2**31 - 1 if env_bool("DATABASE_PREPARED_STATEMENTS", True) else None)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"


# Celery --------------------------------------------------------------------------------------
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or "sqla+" + sqlalchemy_url(DATABASES["default"])
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A broker that is down must not hold a request for more than about a second: publishing gives
# up quickly (marketplace.celery.publish_connection) and the outbox sweep sends it later.
CELERY_BROKER_CONNECTION_TIMEOUT = 1
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2}
if CELERY_BROKER_URL.startswith("redis"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_connect_timeout": 1, "socket_timeout": 5}
elif CELERY_BROKER_URL.startswith("sqla+"):
    # Passed to SQLAlchemy's create_engine by kombu.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"pool_pre_ping": True, "connect_args": {"connect_timeout": 1}}
CELERY_BEAT_SCHEDULE = {
    "outbox-sweep": {"task": "outbox.sweep", "schedule": 10.0},
    "worker-heartbeat": {"task": "outbox.worker_heartbeat", "schedule": 30.0},
    # The single operator sender (moderator approvals on-chain); idle runs never touch the chain.
    "chain-send-operator-actions": {"task": "chain.send_operator_actions", "schedule": 5.0,
                                    "options": {"expires": 5.0}},
    # The chain indexer: a run reads every new block; one at a time (an advisory lock).
    "chain-index-events": {"task": "chain.index_events", "schedule": 1.0, "options": {"expires": 1.0}},
    # The keeper: matured orders and expired disputes, queued for the operator sender.
    "orders-queue-due": {"task": "orders.queue_due", "schedule": float(os.environ.get("KEEPER_INTERVAL", "30")),
                         "options": {"expires": 30.0}},
    "accounts-delete-expired-nonces": {"task": "accounts.delete_expired_nonces", "schedule": 600.0},
    "limits-purge-expired": {"task": "limits.purge_expired", "schedule": 300.0},
    # x402 payments whose agent key ledger failed to move with them (payments.settlement).
    "payments-repair-ledgers": {"task": "payments.repair_ledgers", "schedule": 60.0, "options": {"expires": 60.0}},
    # Node metering (rewards/metering.py): partitions made ahead and dropped past retention, the
    # daily roll-up, the anti-abuse flags, due rebindings, used request signatures.
    "rewards-maintain-partitions": {"task": "rewards.maintain_heartbeat_partitions", "schedule": 3600.0},
    "rewards-roll-up-heartbeats": {"task": "rewards.roll_up_heartbeats", "schedule": 300.0,
                                   "options": {"expires": 300.0}},
    "rewards-flag-abuse": {"task": "rewards.flag_abuse", "schedule": 300.0, "options": {"expires": 300.0}},
    "rewards-apply-due-bindings": {"task": "rewards.apply_due_bindings", "schedule": 60.0,
                                   "options": {"expires": 60.0}},
    "rewards-purge-request-signatures": {"task": "rewards.purge_request_signatures", "schedule": 600.0},
    # Epochs: opens the current one and moves closed ones through scored, queued, proposed, matured.
    "rewards-close-epochs": {"task": "rewards.close_epochs", "schedule": 10.0,
                             "options": {"expires": 10.0}},
    # Fetch jobs: new jobs from due collection targets; settling jobs whose reveals are in (or due).
    "rewards-make-jobs": {"task": "rewards.make_jobs", "schedule": 10.0,
                          "options": {"expires": 10.0}},
    "rewards-settle-jobs": {"task": "rewards.settle_jobs", "schedule": 5.0,
                            "options": {"expires": 5.0}},
    # Community datasets: a version of the collected rows once due, listed by the operator.
    "rewards-cut-community-versions": {"task": "rewards.cut_community_versions", "schedule": 60.0,
                                       "options": {"expires": 60.0}},
}
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")

# Chain ---------------------------------------------------------------------------------------
# CHAIN_EMBEDDED=1 means the chain is a local dev node this project owns (the launcher's anvil,
# the docker-compose anvil): a wiped chain may be redeployed. Against any other chain the server
# refuses to start when its recorded deployment is gone.
CHAIN_RPC_URL = os.environ.get("CHAIN_RPC_URL", "http://127.0.0.1:8545")
CHAIN_EMBEDDED = env_bool("CHAIN_EMBEDDED", False)
CHAIN_ID = env_int("CHAIN_ID", 31337)  # the chain wallets sign in on and pay on
CHAIN_RPC_TIMEOUT = float(os.environ.get("CHAIN_RPC_TIMEOUT", "2"))
# The indexer reads events this many blocks below the head (a deeper reorganisation than that is
# still repaired, up to the indexer's kept block hashes); anvil's chain does not reorganise.
CHAIN_CONFIRMATIONS = env_int("CHAIN_CONFIRMATIONS", 0 if CHAIN_ID == 31337 else 12)
# Blocks per eth_getLogs request (a node that refuses a range gets halves of it).
CHAIN_LOG_RANGE = env_int("CHAIN_LOG_RANGE", 2000)
# The operator key signs what the server sends (deployments, approvals, roots). Anvil's first
# well-known dev key is the default only for a local chain; real keys come from the environment.
ANVIL_DEV_KEY_0 = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"  # refused off chain 31337
CHAIN_OPERATOR_KEY = os.environ.get("CHAIN_OPERATOR_KEY") or (ANVIL_DEV_KEY_0 if CHAIN_EMBEDDED else "")
# Who holds what on freshly deployed contracts (all default to the operator, as in the demo).
CHAIN_ADMIN = os.environ.get("CHAIN_ADMIN", "")
CHAIN_ARBITER = os.environ.get("CHAIN_ARBITER", "")
CHAIN_TREASURY = os.environ.get("CHAIN_TREASURY", "")
# Asked by the operator sender (chain/ imports no app) before it signs an approval: a dotted path
# to a function of the row that says why the listing must not go on sale ("" when it may).
CHAIN_APPROVAL_CHECK = "marketplace.catalog.listing.unapproved_version"
# The same before it signs an x402 settlement: why the payment must not be sent now (its agent
# key was revoked or expired since it was claimed).
CHAIN_PURCHASE_CHECK = "marketplace.payments.settlement.unsendable"
refuse_dev_accounts(CHAIN_ID, operator_key=CHAIN_OPERATOR_KEY, roles={
    "CHAIN_ADMIN": CHAIN_ADMIN, "CHAIN_ARBITER": CHAIN_ARBITER, "CHAIN_TREASURY": CHAIN_TREASURY})
# A block explorer of CHAIN_ID (e.g. https://basescan.org): pages link transactions to
# <EXPLORER_URL>/tx/<hash> and addresses to <EXPLORER_URL>/address/<address>. Unset: no links.
EXPLORER_URL = os.environ.get("EXPLORER_URL", "").rstrip("/")
MARKET_FEE_BPS = env_int("MARKET_FEE_BPS", 250)  # 2.5 %, at most 1000 (10 %) on-chain
# Set on freshly deployed markets: the shortest dispute window a listing may have (the demo may use
# a short one), and how long an arbiter has to decide a dispute before anyone may refund it in full
# (7 to 30 days on-chain).
MARKET_MIN_DISPUTE_WINDOW = env_int("MARKET_MIN_DISPUTE_WINDOW", 24 * 3600)
MARKET_DISPUTE_PERIOD = env_int("MARKET_DISPUTE_PERIOD", 14 * 24 * 3600)
# The operator sender: how long a run waits for the receipts of what it sent, and how long a
# transaction may wait in the mempool before it is replaced at its nonce with higher fees.
OPERATOR_RECEIPT_TIMEOUT = float(os.environ.get("OPERATOR_RECEIPT_TIMEOUT", "30"))
OPERATOR_REPLACE_AFTER = float(os.environ.get("OPERATOR_REPLACE_AFTER", "120"))
# The most the operator sender bids per unit of gas (wei), replacements included.
OPERATOR_MAX_FEE_PER_GAS = env_int("OPERATOR_MAX_FEE_PER_GAS", 1_000 * 10**9)
# The keeper: an order whose release or refund failed (or was skipped) is queued again after this.
KEEPER_RETRY_AFTER = float(os.environ.get("KEEPER_RETRY_AFTER", "600"))
# Money that reaches the market without an order (orders/strays.py): a pushed authorization of less
# than this (token base units; 0.01 of a 6-decimal token) is recorded as dust, not returned.
STRAY_RETURN_DUST = env_int("STRAY_RETURN_DUST", 10_000)
# Seconds a root waits, revocable, before claims: under half of REWARD_EPOCH_SECONDS (checked).
REWARD_ROOT_DELAY = env_int("REWARD_ROOT_DELAY", 1200)

# Contributions and rewards (docs/rewards.md) ---------------------------------------------------
# Address ranges whose nodes are not told apart by network (the demo's and the tests' nodes all
# come from 127.0.0.1): the rules on IP ranges (two nodes of a job, rewards per /24) skip them.
# Empty by default: the rules hold for every address.
REWARD_TRUSTED_NETWORKS = [n.strip() for n in os.environ.get("REWARD_TRUSTED_NETWORKS", "").split(",") if n.strip()]
# The most clock skew a node's signed message may show, in seconds.
REWARD_CLOCK_SKEW = env_int("REWARD_CLOCK_SKEW", 60)
# Binding (docs/rewards-node.md): a Bind signed on the website may be this many seconds old (a
# person signs it; a node binding with a wallet key gets REWARD_CLOCK_SKEW); a rebinding without
# the old wallet's signature waits this long; a wallet binds at most this many devices.
REWARD_BIND_WINDOW = env_int("REWARD_BIND_WINDOW", 3600)
REWARD_REBIND_COOLDOWN = env_int("REWARD_REBIND_COOLDOWN", 7 * 24 * 3600)
REWARD_MAX_DEVICES_PER_WALLET = env_int("REWARD_MAX_DEVICES_PER_WALLET", 10)
# Heartbeats: an uptime slot's length, the least time between two heartbeats of a device, the
# most heartbeats one address sends a minute (counted in each web process; trusted networks are
# exempt), and how many days the raw rows (and their IP addresses) are kept.
REWARD_SLOT_SECONDS = env_int("REWARD_SLOT_SECONDS", 60)
REWARD_HEARTBEAT_MIN_INTERVAL = float(os.environ.get("REWARD_HEARTBEAT_MIN_INTERVAL", "10"))
REWARD_HEARTBEATS_PER_IP_MINUTE = env_int("REWARD_HEARTBEATS_PER_IP_MINUTE", 600)
# Where that count is kept: "process" (each web process's memory: free) or "shared" (the limits
# service, PostgreSQL or Redis: exact across processes, one more round trip per heartbeat).
REWARD_HEARTBEAT_IP_COUNT = os.environ.get("REWARD_HEARTBEAT_IP_COUNT", "process")
REWARD_HEARTBEAT_RETENTION_DAYS = env_int("REWARD_HEARTBEAT_RETENTION_DAYS", 7)
# Anti-abuse flags: wallets binding or sending heartbeats from one address in a day beyond this;
# heartbeats of one device from this many addresses within one slot; seconds of slack before
# uptime counts as more than wall time.
REWARD_WALLETS_PER_IP_DAY = env_int("REWARD_WALLETS_PER_IP_DAY", 3)
REWARD_IPS_PER_DEVICE_SLOT = env_int("REWARD_IPS_PER_DEVICE_SLOT", 2)
REWARD_WALL_TIME_SLACK = env_int("REWARD_WALL_TIME_SLACK", 120)
# Epochs, scoring and payouts (docs/rewards-epochs.md). Amounts in the reward token's base units.
REWARD_EPOCH_SECONDS = env_int("REWARD_EPOCH_SECONDS", 3600)
REWARD_EMISSION_PER_EPOCH = env_int("REWARD_EMISSION_PER_EPOCH", 1_000 * 10**6)
# Seconds after an epoch's end before it is scored: a heartbeat stamped inside the window may
# still be committing (an ingest statement waits at most INGEST_STATEMENT_TIMEOUT, 10 s) and the
# web and ingest hosts' clocks differ a little from the worker's. Default: 60, or a tenth of a
# shorter epoch.
REWARD_SCORE_GRACE = env_int("REWARD_SCORE_GRACE", min(60, REWARD_EPOCH_SECONDS // 10))
# Community datasets (rewards/community.py): a version is cut from the collected rows when this
# many wait, or an epoch after the last version; it is listed at this price (base units).
REWARD_COMMUNITY_ROWS = env_int("REWARD_COMMUNITY_ROWS", 10_000)
REWARD_COMMUNITY_PRICE = env_int("REWARD_COMMUNITY_PRICE", 5 * 10**6)
REWARD_UPTIME_WEIGHT = env_int("REWARD_UPTIME_WEIGHT", 1)  # points per verified uptime slot
REWARD_JOB_WEIGHT = env_int("REWARD_JOB_WEIGHT", 10)  # points per verified job point
REWARD_REFERRAL_BPS = [env_int("REWARD_REFERRAL_TIER1_BPS", 1_000),
                       env_int("REWARD_REFERRAL_TIER2_BPS", 500)]
REWARD_REFERRAL_DELAY_DAYS = env_int("REWARD_REFERRAL_DELAY_DAYS", 7)
REWARD_REFERRAL_CAP = env_int("REWARD_REFERRAL_CAP", 10_000)  # bonus points per referrer per epoch
# Points per /24 or /56 per epoch (0: no cap).
REWARD_NETWORK_POINT_CAP = env_int("REWARD_NETWORK_POINT_CAP", 100_000)
# Devices of one /24 (IPv4) or /56 (IPv6) that earn an uptime slot: this many of those with a
# probe-answered heartbeat in the slot, drawn per slot by a keyed hash of (slot, device id) (the key
# derived from SECRET_KEY), not by arrival (0: no cap). Networks in REWARD_TRUSTED_NETWORKS are
# exempt.
REWARD_DEVICES_PER_NETWORK = env_int("REWARD_DEVICES_PER_NETWORK", 8)
# A key holding the reward token: the close transfers each epoch's emission from it into the
# distributor before proposing. Unset: the close waits until someone funds the distributor.
REWARD_TREASURY_KEY = os.environ.get("REWARD_TREASURY_KEY", "")
refuse_dev_accounts(CHAIN_ID, operator_key="", roles={}, keys={"REWARD_TREASURY_KEY": REWARD_TREASURY_KEY})
_treasury_address = key_address(REWARD_TREASURY_KEY) if REWARD_TREASURY_KEY else None
if _treasury_address is not None and _treasury_address == key_address(CHAIN_OPERATOR_KEY):
    raise ImproperlyConfigured(
        "REWARD_TREASURY_KEY is the operator's key (CHAIN_OPERATOR_KEY): give the treasury a key of its own, or the "
        "treasury's transfers and the operator sender's transactions would take each other's nonces.")
if REWARD_ROOT_DELAY * 2 >= REWARD_EPOCH_SECONDS:
    raise ImproperlyConfigured(
        f"REWARD_ROOT_DELAY ({REWARD_ROOT_DELAY} s) must be less than half of REWARD_EPOCH_SECONDS "
        f"({REWARD_EPOCH_SECONDS} s): a root must mature well before the next epoch's root "
        "replaces it")
if not 0 <= REWARD_SCORE_GRACE < REWARD_EPOCH_SECONDS // 4:
    raise ImproperlyConfigured(f"REWARD_SCORE_GRACE ({REWARD_SCORE_GRACE} s) is from 0 to under a quarter of "
                               f"REWARD_EPOCH_SECONDS ({REWARD_EPOCH_SECONDS} s).")
# Fetch jobs (docs/rewards-jobs.md): nodes per job (each of another wallet and, outside
# REWARD_TRUSTED_NETWORKS, another /24 or /56); how long a lease waits for its commitment; how long
# a job takes commitments, then reveals; points per agreeing result.
REWARD_JOB_REPLICAS = max(2, env_int("REWARD_JOB_REPLICAS", 2))
REWARD_JOB_LEASE_SECONDS = env_int("REWARD_JOB_LEASE_SECONDS", 120)
REWARD_JOB_COMMIT_SECONDS = env_int("REWARD_JOB_COMMIT_SECONDS", 600)
REWARD_JOB_REVEAL_SECONDS = env_int("REWARD_JOB_REVEAL_SECONDS", 300)
REWARD_JOB_POINTS = env_int("REWARD_JOB_POINTS", 10)
REWARD_JOB_LEASES_PER_REQUEST = env_int("REWARD_JOB_LEASES_PER_REQUEST", 4)
# Assignments a device, and a wallet's devices together, may hold open at once (leased or
# committed, not yet revealed, declined or expired); new leases a device, and a wallet's devices
# together, may take in an hour (each lease is a draw: redrawing costs). A device with
# REWARD_JOB_STRIKES leases that ended without a result (expired uncommitted, or committed and
# never revealed), or REWARD_JOB_DECLINES declined ones, within the last REWARD_JOB_STRIKE_WINDOW
# seconds gets no new lease until fewer remain in the window; every device of a wallet whose
# leases together have REWARD_JOB_WALLET_STRIKES strikes or REWARD_JOB_WALLET_DECLINES declines
# in the window gets none either (device keys are free: a fresh key does not escape them).
REWARD_JOB_OPEN_LEASES_PER_DEVICE = max(1, env_int("REWARD_JOB_OPEN_LEASES_PER_DEVICE", 2))
REWARD_JOB_OPEN_LEASES_PER_WALLET = max(1, env_int("REWARD_JOB_OPEN_LEASES_PER_WALLET", 10))
REWARD_JOB_LEASES_PER_HOUR = max(1, env_int("REWARD_JOB_LEASES_PER_HOUR", 60))
REWARD_JOB_WALLET_LEASES_PER_HOUR = max(
    1, env_int("REWARD_JOB_WALLET_LEASES_PER_HOUR", REWARD_JOB_LEASES_PER_HOUR * REWARD_MAX_DEVICES_PER_WALLET))
REWARD_JOB_STRIKES = max(1, env_int("REWARD_JOB_STRIKES", 3))
REWARD_JOB_DECLINES = max(1, env_int("REWARD_JOB_DECLINES", 20))
REWARD_JOB_WALLET_STRIKES = max(REWARD_JOB_STRIKES, env_int("REWARD_JOB_WALLET_STRIKES", 3 * REWARD_JOB_STRIKES))
REWARD_JOB_WALLET_DECLINES = max(
    REWARD_JOB_DECLINES, env_int("REWARD_JOB_WALLET_DECLINES", 3 * REWARD_JOB_DECLINES))
REWARD_JOB_STRIKE_WINDOW = env_int("REWARD_JOB_STRIKE_WINDOW", 3600)
# Shares of jobs whose answer the server fetched before handing them out (canaries), and of jobs it
# fetches itself when they settle; a node whose result disagrees with either loses this much
# quality (of 10,000) at once and its wallet is flagged (amounts held).
REWARD_CANARY_RATE = float(os.environ.get("REWARD_CANARY_RATE", "0.05"))
REWARD_SERVER_CHECK_RATE = float(os.environ.get("REWARD_SERVER_CHECK_RATE", "0.10"))
REWARD_QUALITY_PENALTY_BPS = env_int("REWARD_QUALITY_PENALTY_BPS", 2_500)
# Hosts (host:port) the server's own fetches may reach although not public: the demo's local site.
REWARD_FETCH_ALLOW = [
    h.strip() for h in os.environ.get("REWARD_FETCH_ALLOW", "").split(",") if h.strip()]
CONTRACTS_OUT_DIR = Path(os.environ.get("CONTRACTS_OUT_DIR") or BASE_DIR / "contracts" / "out")

# Static files and the frontend build -----------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "frontend" / "dist", BASE_DIR / "frontend" / "public"]  # built, and as written
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Dataset files: never under a public URL. Any django-storages backend fits here
    # (PRIVATE_STORAGE_BACKEND, with its own settings from the environment).
    "private": {
        "BACKEND": os.environ.get("PRIVATE_STORAGE_BACKEND", "django.core.files.storage.FileSystemStorage"),
        # Owner-only on disk: the web and worker processes' user reads them, nobody else.
        "OPTIONS": {"location": os.environ.get("PRIVATE_STORAGE_DIR") or str(DATA_DIR / "files"),
                    "base_url": "/no-public-url/", "file_permissions_mode": 0o600,
                    "directory_permissions_mode": 0o700}
        if not os.environ.get("PRIVATE_STORAGE_BACKEND") else {},
    },
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG and env_bool("DJANGO_MANIFEST_STATIC", True)
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# Without collectstatic (local runs, tests) whitenoise serves straight from STATICFILES_DIRS,
# and an empty STATIC_ROOT is expected there, not worth a warning at every start.
WHITENOISE_USE_FINDERS = True
if not STATIC_ROOT.exists():
    warnings.filterwarnings("ignore", message="No directory at")

# Uploads stream to UPLOAD_TMP_DIR, then move into the private storage.
MAX_UPLOAD_SIZE = env_int("MAX_UPLOAD_SIZE", 5 * 1024**3)  # bytes
UPLOAD_TMP_DIR = Path(os.environ.get("UPLOAD_TMP_DIR") or DATA_DIR / "uploads")

# Analysis of uploaded files: each runs in a child process with this much address space
# (RLIMIT_AS; DuckDB gets half of it), CPU time (RLIMIT_CPU, all its threads together) and wall
# time, and DuckDB may spill this much to disk. Over a limit the analysis fails and says which.
ANALYSIS_MEMORY_LIMIT_MB = env_int("ANALYSIS_MEMORY_LIMIT_MB", 4096)
ANALYSIS_CPU_SECONDS = env_int("ANALYSIS_CPU_SECONDS", 600)
ANALYSIS_WALL_SECONDS = env_int("ANALYSIS_WALL_SECONDS", 1800)
ANALYSIS_TEMP_LIMIT_MB = env_int("ANALYSIS_TEMP_LIMIT_MB", 10_240)

# Avatars: the uploaded image (PNG, JPEG, WebP or GIF) at most this big, re-encoded to a small square.
MAX_AVATAR_SIZE = env_int("MAX_AVATAR_SIZE", 1024 * 1024)  # bytes

# This host's search index (derived from PostgreSQL; rebuilt by `manage.py search_rebuild`).
SEARCH_INDEX_DIR = Path(os.environ.get("SEARCH_INDEX_DIR") or DATA_DIR / "search")

# Internationalisation --------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Security: on by default whenever DEBUG is off; each can be relaxed explicitly -----------------
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", not DEBUG)
# Django's database sessions and ModelBackend, each reading through a prepared statement on every
# request (marketplace/accounts/sessions.py, backends.py); sessions made before name ModelBackend.
SESSION_ENGINE = "marketplace.accounts.sessions"
AUTHENTICATION_BACKENDS = ["marketplace.accounts.backends.UserBackend", "django.contrib.auth.backends.ModelBackend"]
SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Everything from this site only; no inline script or style anywhere (marketplace/security.py).
# data: images are for Swagger UI's icons, which its stylesheet embeds.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
if env_bool("DJANGO_BEHIND_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# The health check is polled over plain HTTP by load balancers and compose health checks.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # JSON bodies only (uploads have their own parsers): no form posts, so no cross-site form can
    # reach the API, and the schema lists one media type per body.
    # JSON over DATA_UPLOAD_MAX_MEMORY_SIZE is refused with 413 (see Limits below).
    "DEFAULT_PARSER_CLASSES": ["marketplace.limits.parsers.JSONParser"],
    # The API speaks only JSON, so DRF's `?format=` renderer override is off: `format` is the
    # search's file-format filter.
    "URL_FORMAT_OVERRIDE": None,
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "EXCEPTION_HANDLER": "marketplace.api.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "marketplace.api.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Datamarket API",
    "DESCRIPTION": "Search the catalog, sign in with a wallet (SIWE), publish datasets, give AI agents keys "
    "with budgets (their payments carry the key in the X-Agent-Key header: see the AgentKeyHeader security "
    'scheme). Every error has the body {"error": {"code", "message", "fields"?}}.',
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",  # served from this server, no CDN
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # One name per choice set that several serializers share (otherwise spectacular makes up
    # names such as Reason279Enum and warns).
    "ENUM_NAME_OVERRIDES": {
        "PolicyReasonEnum": "marketplace.moderation.policy.REASON_CODES",
        "BanReasonEnum": "marketplace.moderation.bans.REASON_CODES",
        "RevisionDecisionEnum": "marketplace.catalog.revisions.DECISION_CODES",
        "ApprovalDecisionEnum": "marketplace.catalog.revisions.APPROVAL_ONLY",
        "FlagDecisionEnum": "marketplace.moderation.abuse.DECISION_CODES",
    },
    # The header an AI agent sends with an HTTP 402 payment (the paid URLs are outside /api/, so
    # no operation lists it): keys are made under /api/v1/me/agent-keys (accounts.agent_keys).
    "APPEND_COMPONENTS": {"securitySchemes": {"AgentKeyHeader": {
        "type": "apiKey", "in": "header", "name": "X-Agent-Key",
        "description": "An agent key (made under /api/v1/me/agent-keys, shown once). An agent sends it with "
        "each HTTP 402 payment (PAYMENT-SIGNATURE or X-PAYMENT) from the wallet registered with it: a payment "
        "from a registered wallet without its key is refused (403 key_required), and each payment is held to "
        "the key's per-purchase maximum, cap per rolling 24 hours, expiry and allowed categories and "
        "publishers (401 unknown_key, key_revoked, key_expired; 403 wrong_wallet, category_not_allowed, "
        "publisher_not_allowed; 402 over_purchase_max, over_daily_cap). A revoked or expired key's wallet is "
        "refused without the key too (403 key_revoked, key_expired) until its owner releases the wallet.",
    }}},
}
SIWE_NONCE_TTL = env_int("SIWE_NONCE_TTL", 300)  # seconds a sign-in nonce stays usable

# Limits (marketplace/limits) -------------------------------------------------------------------
# Rates per rule and scope ("ip": the client's address, an IPv6 client's /64; "wallet": the
# signed-in wallet), as "count/second|minute|hour|day" or "off". Nonces count per address when
# issued and per wallet when a wallet signs in with one (the address in a nonce request is
# unproven, so counting it there would let anyone use up another wallet's allowance).
LIMITS = {
    "nonce": {"ip": os.environ.get("LIMIT_NONCES_PER_IP", "30/minute"),
              "wallet": os.environ.get("LIMIT_NONCES_PER_WALLET", "20/hour")},
    "sign_in": {"ip": os.environ.get("LIMIT_SIGN_INS_PER_IP", "30/minute")},
    "upload": {"ip": os.environ.get("LIMIT_UPLOADS_PER_IP", "300/day"),
               "wallet": os.environ.get("LIMIT_UPLOADS_PER_WALLET", "100/day")},
    "dataset": {"ip": os.environ.get("LIMIT_DATASETS_PER_IP", "200/day"),
                "wallet": os.environ.get("LIMIT_DATASETS_PER_WALLET", "50/day")},
    # Listing transaction hashes posted for the chain indexer to read through: each costs a few
    # calls to the chain node (the receipt, the indexer's check of its cursor, then its reads).
    # The page posts one every 3 s until the transaction has its confirmations, 100 times at most.
    "listing_receipt": {"ip": os.environ.get("LIMIT_LISTING_RECEIPTS_PER_IP", "300/hour"),
                        "wallet": os.environ.get("LIMIT_LISTING_RECEIPTS_PER_WALLET", "120/hour")},
    # Download links asked for (each is good for Range requests for DOWNLOAD_TOKEN_SECONDS).
    "download": {"ip": os.environ.get("LIMIT_DOWNLOADS_PER_IP", "600/hour"),
                 "wallet": os.environ.get("LIMIT_DOWNLOADS_PER_WALLET", "300/hour")},
    # Purchase transactions posted for the indexer to read through (the buying page posts one a second).
    "order_receipt": {"ip": os.environ.get("LIMIT_ORDER_RECEIPTS_PER_IP", "600/hour")},
    # Signed confirmations and disputes the operator key sends for buyers (each costs the operator gas).
    "relay": {"ip": os.environ.get("LIMIT_RELAYS_PER_IP", "60/hour"),
              "wallet": os.environ.get("LIMIT_RELAYS_PER_WALLET", "20/hour")},
    # Dispute statements written (a buyer's statement, a seller's answer: one each per order).
    "statement": {"ip": os.environ.get("LIMIT_STATEMENTS_PER_IP", "60/hour"),
                  "wallet": os.environ.get("LIMIT_STATEMENTS_PER_WALLET", "20/hour")},
    # Node bindings and unbindings (each checks two signatures, a contract wallet's on the chain),
    # and a node's device-signed requests (session, status, jobs).
    "node_bind": {"ip": os.environ.get("LIMIT_NODE_BINDS_PER_IP", "120/hour")},
    "node_request": {"ip": os.environ.get("LIMIT_NODE_REQUESTS_PER_IP", "1200/minute")},
    # Heartbeats per address, when REWARD_HEARTBEAT_IP_COUNT is "shared" (else counted in process).
    "node_heartbeat": {"ip": f"{REWARD_HEARTBEATS_PER_IP_MINUTE}/minute"},
    # Signed requests of nodes for fetch jobs (leases, commitments, reveals): a node asks every few
    # seconds and sends two requests per job.
    "node_jobs": {"ip": os.environ.get("LIMIT_NODE_JOBS_PER_IP", "1200/minute"),
                  "wallet": os.environ.get("LIMIT_NODE_JOBS_PER_WALLET", "600/minute")},
    # Reports of datasets and publishers, and notices through the public form (moderation.reports).
    "report": {"ip": os.environ.get("LIMIT_REPORTS_PER_IP", "20/hour"),
               "wallet": os.environ.get("LIMIT_REPORTS_PER_WALLET", "10/hour")},
    # The paid URL's 402 answers (`GET /pay/<listing id>`): each stores a sign-in-with-x nonce and
    # reads the listing from the chain. Agents retry a few times per purchase; scrapers of prices
    # use the discovery list.
    "payment_required": {"ip": os.environ.get("LIMIT_PAYMENT_REQUIRED_PER_IP", "120/minute")},
    # New payments presented there (per client address and per the authorization's `from`, counted
    # before anything is read from the chain): each is verified with about 7 calls to the node.
    # Retries of a payment already claimed are not counted here (a settled one's count as downloads).
    "payment": {"ip": os.environ.get("LIMIT_PAYMENTS_PER_IP", "30/minute"),
                "wallet": os.environ.get("LIMIT_PAYMENTS_PER_PAYER", "20/minute")},
}
# How long a download link lasts (at most 10 minutes), and the internal location of the web server
# in front (nginx's X-Accel-Redirect) that sends the files itself when set, e.g. /protected-files/.
DOWNLOAD_TOKEN_SECONDS = min(600, env_int("DOWNLOAD_TOKEN_SECONDS", 600))
DOWNLOAD_ACCEL_REDIRECT = os.environ.get("DOWNLOAD_ACCEL_REDIRECT", "")
# x402 machine payments (docs/agent-payments.md): the seconds a payment's authorization must still
# be valid beyond now to be taken (the time settling may need), the maxTimeoutSeconds a 402 offers
# (at least 60 and more than the settlement limit), and the name v1 clients give this chain.
X402_SETTLEMENT_SECONDS = max(1, env_int("X402_SETTLEMENT_SECONDS", 60))
X402_TIMEOUT_SECONDS = max(60, X402_SETTLEMENT_SECONDS + 30, env_int("X402_TIMEOUT_SECONDS", 300))
X402_V1_NETWORK = os.environ.get("X402_V1_NETWORK") or {1: "ethereum", 8453: "base", 84532: "base-sepolia"}.get(
    CHAIN_ID, "anvil")
# A paid download is served once its settlement's block has X402_CONFIRMATIONS blocks on top (0 on
# anvil's chain, 2 elsewhere), awaited only for a price above X402_CONFIRMATIONS_ABOVE base units
# (10 units of a 6-decimal token): a small payment is served from its receipt, as a card terminal
# hands over a coffee before the payment clears.
X402_CONFIRMATIONS = env_int("X402_CONFIRMATIONS", 0 if CHAIN_ID == 31337 else 2)
X402_CONFIRMATIONS_ABOVE = env_int("X402_CONFIRMATIONS_ABOVE", 10_000_000)
# Counters live in Redis when this is set (e.g. redis://redis:6379/1), else in PostgreSQL.
LIMITS_REDIS_URL = os.environ.get("LIMITS_REDIS_URL", "")
LIMITS_REDIS_PREFIX = os.environ.get("LIMITS_REDIS_PREFIX", "limits:")
# How many proxies in front of the web server append to X-Forwarded-For; the client's address is
# the entry the outermost of them added. 0: the TCP peer is the client and the header is ignored.
TRUSTED_PROXIES = env_int("TRUSTED_PROXIES", 0)
# Where those proxies connect from: X-Forwarded-For is read only from a TCP peer inside one of
# these networks (or over a Unix socket); any other peer is the client, whatever it wrote.
TRUSTED_PROXY_NETWORKS = env_networks("TRUSTED_PROXY_NETWORKS", [
    "127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"])
# Bytes of dataset files per wallet and per client address (0: no quota), and the free space the
# upload and storage volumes keep: an upload that would go below it is refused.
STORAGE_QUOTA_PER_WALLET = env_int("STORAGE_QUOTA_PER_WALLET", 50 * 1024**3)
STORAGE_QUOTA_PER_IP = env_int("STORAGE_QUOTA_PER_IP", 200 * 1024**3)
UPLOAD_MIN_FREE_DISK = env_int("UPLOAD_MIN_FREE_DISK", 2 * 1024**3)
UPLOAD_RESERVATION_TTL = 600  # seconds a reservation outlives its upload's last sign of life
# JSON and form bodies larger than this are refused with 413 (Django's name for the form limit).
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("MAX_BODY_SIZE", 2_621_440)

# Moderation: a dispute whose deadline is this close is flagged in the arbiters' console.
MODERATION_DISPUTE_NEAR_HOURS = env_int("MODERATION_DISPUTE_NEAR_HOURS", 24)
REVIEW_TARGET_HOURS = env_int("REVIEW_TARGET_HOURS", 24)  # a review item is overdue after this long
REVIEW_CLAIM_MINUTES = env_int("REVIEW_CLAIM_MINUTES", 30)  # a moderator's claim on an item holds this long
# Notifications by e-mail: optional, off by default (the site shows every notification).
NOTIFY_BY_EMAIL = env_bool("NOTIFY_BY_EMAIL", False)
SITE_URL = os.environ.get("SITE_URL", "http://localhost:8000")  # links in e-mails
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "Datamarket <no-reply@localhost>")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = 10

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
        # The audit log's hashes, one line per entry (`audit <id> <hash>`), kept outside the
        # database: to stderr, or appended to AUDIT_LOG_FILE (docs/moderation.md).
        "audit": ({"class": "logging.FileHandler", "filename": os.environ["AUDIT_LOG_FILE"], "formatter": "plain"}
                  if os.environ.get("AUDIT_LOG_FILE") else {"class": "logging.StreamHandler", "formatter": "plain"}),
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "web3": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
        "marketplace.audit": {"handlers": ["audit"], "level": "INFO", "propagate": False},
    },
}
