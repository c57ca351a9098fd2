"""The demo's collection targets: two community datasets (owned by the operator's account, so
the server can list them) collected from the local demo site (demo_site.py) every minute."""

from django.db import transaction
from eth_utils import to_checksum_address

from marketplace.accounts.services import wallet_user
from marketplace.catalog.models import Dataset
from marketplace.catalog.services import create_dataset

from .models import CollectionTarget

TARGETS = [
    {
        "name": "Demo site: weather stations",
        "path": "/weather?at={slot}",
        "extractor": {
            "kind": "json",
            "rows": "/stations",
            "fields": {
                "slot": "/slot",
                "station": "/id",
                "temp_c": "/temp_c",
                "humidity": "/humidity",
            },
        },
        "dataset": (
            "Community: weather station readings",
            "Readings of five weather stations, collected by contributors' nodes every minute.",
        ),
    },
    {
        "name": "Demo site: shop prices",
        "path": "/prices?at={slot}",
        "extractor": {"kind": "table", "table": 0},
        "dataset": (
            "Community: shop prices",
            "A shop's prices and stock, collected by contributors' nodes.",
        ),
    },
]


def operator_user(address=None):
    """The operator's account (CHAIN_OPERATOR_KEY's address), which owns community datasets."""
    if address is None:
        from marketplace.chain.client import operator_account

        address = operator_account().address
    return wallet_user(to_checksum_address(address), display_name="Datamarket community")


def community_dataset(*, owner, title: str, summary: str) -> Dataset:
    found = Dataset.objects.filter(owner=owner, title=title).first()
    return found or create_dataset(
        owner=owner,
        title=title,
        summary=summary,
        license="CC0-1.0",
        category="environment" if "weather" in title else "economics",
        tags=["community"],
    )


@transaction.atomic
def ensure_demo_targets(
    site_url: str, *, owner=None, every_seconds: int = 60
) -> list[CollectionTarget]:
    """The demo's targets for the site at `site_url` (created once; the URL follows the site)."""
    owner = owner or operator_user()
    targets = []
    for spec in TARGETS:
        dataset = community_dataset(
            owner=owner, title=spec["dataset"][0], summary=spec["dataset"][1]
        )
        target, _ = CollectionTarget.objects.update_or_create(
            name=spec["name"],
            defaults=dict(
                url=site_url.rstrip("/") + spec["path"],
                extractor=spec["extractor"],
                dataset=dataset,
                every_seconds=every_seconds,
                max_bytes=100_000,
                timeout_seconds=10,
            ),
        )
        targets.append(target)
    return targets
