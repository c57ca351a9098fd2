"""Community datasets: the rows the nodes' agreeing results collected, cut into versions that the
marketplace lists like any other, with the reward distributor as the payout address.

A community dataset is an ordinary catalog dataset owned by the operator's account (the wallet of
CHAIN_OPERATOR_KEY), so the server can list it: `cut_versions` (beat) takes a dataset's rows that
no version holds yet, once an epoch has passed since its last version or REWARD_COMMUNITY_ROWS
rows wait, and in one transaction

1. writes them as a CSV file (columns: the union of the rows' keys, sorted; rows in collection
   order) and stores it as the dataset's next version through `catalog.services.add_version`
   (hashed, analysed like an upload),
2. marks the rows as that version's and records each contributing wallet's row count
   (`CommunityShare`: a sale of the version is shared among them pro rata, see epochs.py),
3. queues an operator action that creates the listing on-chain (`createListing` with
   REWARD_COMMUNITY_PRICE, the market's minimum dispute window and the distributor as payout).

The indexer links the new listing to the version (the operator owns the dataset and the hash
matches), which puts it up for review: a moderator approves it as any other dataset before it
can be bought. Sales pay the distributor; the close counts each release as community revenue.
"""
from __future__ import annotations

import csv
from datetime import timedelta
import io
import json
import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from marketplace.catalog import services as catalog
from marketplace.catalog.models import Dataset, DatasetVersion
from marketplace.catalog.uploads import receive
from marketplace.chain.models import OperatorAction
from marketplace.chain.services import deployed_address
from marketplace.outbox.services import enqueue

from .models import CollectedRow, CollectionTarget, CommunityShare

logger = logging.getLogger(__name__)


def operator_address() -> str:
    from marketplace.chain.client import operator_account

    return operator_account().address


def community_datasets():
    """The datasets collection targets feed (whoever created them; only the operator's are cut)."""
    return Dataset.objects.filter(pk__in=CollectionTarget.objects.values("dataset_id")).order_by("pk")


def due(dataset: Dataset, waiting: int, now=None) -> bool:
    """A version is due when REWARD_COMMUNITY_ROWS rows wait, or any row does and an epoch has
    passed since the last version (or since the first waiting row, for the first version)."""
    if waiting == 0:
        return False
    if waiting >= settings.REWARD_COMMUNITY_ROWS:
        return True
    now = now or timezone.now()
    last = dataset.versions.order_by("-number").values_list("created_at", flat=True).first()
    if last is None:
        last = (CollectedRow.objects.filter(dataset=dataset, version=None).order_by("collected_at")
                .values_list("collected_at", flat=True).first())
    return now - last >= timedelta(seconds=settings.REWARD_EPOCH_SECONDS)


def rows_csv(rows: list[dict]) -> bytes:
    """The rows as CSV: a column per key any row has (sorted), values as text (nested values as
    JSON), an empty cell where a row lacks the key."""
    columns = sorted({key for row in rows for key in row})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else
                         json.dumps(row[c], sort_keys=True) if isinstance(row[c], (dict, list)) else row[c]
                         for c in columns])
    return out.getvalue().encode()


def reward_token() -> str:
    """The token the distributor pays in: a community listing must be priced in it, or its sales
    would reach the distributor in a token no root can pay."""
    from marketplace.chain.client import get_web3
    from marketplace.chain.services import reward_distributor

    return reward_distributor(get_web3()).contract.functions.token().call()


def cut_version(dataset: Dataset, *, now=None) -> DatasetVersion | None:
    """Cut the dataset's waiting rows into its next version and queue its listing (see the
    module); None when nothing is due. The operator must own the dataset."""
    operator = operator_address()
    if dataset.owner.address != operator:
        logger.warning("community dataset %s is owned by %s, not by the operator %s: not cut",
                       dataset.slug, dataset.owner.address, operator)
        return None
    market = deployed_address(settings.CHAIN_ID, "DataMarket")
    distributor = deployed_address(settings.CHAIN_ID, "RewardDistributor")
    if market is None or distributor is None:
        return None
    token = reward_token()
    with transaction.atomic():
        Dataset.objects.select_for_update().get(pk=dataset.pk)  # one cut of a dataset at a time
        waiting = list(CollectedRow.objects.select_for_update().filter(dataset=dataset, version=None)
                       .order_by("collected_at", "id"))
        if not due(dataset, len(waiting), now):
            return None
        received = receive(io.BytesIO(rows_csv([r.data for r in waiting])),
                           filename=f"{dataset.slug}-{timezone.now():%Y%m%d-%H%M%S}.csv")
        version = catalog.add_version(dataset, received, price=settings.REWARD_COMMUNITY_PRICE,
                                      token=token)
        CollectedRow.objects.filter(pk__in=[r.pk for r in waiting]).update(version=version)
        counts = {}
        for row in waiting:
            for wallet in set(row.wallets):
                counts[wallet] = counts.get(wallet, 0) + 1
        CommunityShare.objects.bulk_create([CommunityShare(version=version, wallet=w, rows=n)
                                            for w, n in sorted(counts.items())])
        OperatorAction.objects.create(
            kind=OperatorAction.Kind.CREATE_LISTING, chain_id=settings.CHAIN_ID, market=market,
            payload={"token": version.token, "price": str(int(version.price)), "payout": distributor,
                     "content_hash": version.content_hash,
                     "dispute_window": settings.MARKET_MIN_DISPUTE_WINDOW},
            context={"version": version.pk}, created_by="community datasets")
        enqueue("chain.send_operator_actions")  # in this transaction: the outbox sends it once committed
    logger.info("community dataset %s: version %s cut from %s rows", dataset.slug, version.number, len(waiting))
    return version


def cut_versions(now=None) -> list[DatasetVersion]:
    """Cut every community dataset that has a version due (beat)."""
    cut = []
    for dataset in community_datasets().select_related("owner"):
        version = cut_version(dataset, now=now)
        if version is not None:
            cut.append(version)
    return cut
