"""Server-rendered pages. They never wait on the chain or the broker: live status is fetched
from /healthz by the page itself, and every page works without JavaScript (scripts only enhance:
live analysis progress, the publishing forms that talk to the JSON API, copy buttons)."""
from datetime import timedelta
import logging
import math
from urllib.parse import urlencode

from django.conf import settings
from django.http import Http404, HttpResponsePermanentRedirect
from django.shortcuts import render
from django.templatetags.static import static
from django.utils import timezone
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_safe

from marketplace.accounts import avatars, bans
from marketplace.catalog import revisions
from marketplace.catalog.api import LICENSES, SearchParams, default_token, visible_datasets
from marketplace.catalog.models import CATEGORIES, Dataset, DatasetRevision, DatasetVersion
from marketplace.catalog.preview import (
    MIN_PUBLIC_COUNT, column_names, public_analysis_message, public_columns, public_sample, unmatched_hidden,
)
from marketplace.orders import selectors as orders, strays
from marketplace.orders.delivery import paid_listing
from marketplace.orders.models import Order
from marketplace.web.jinja import short_address

logger = logging.getLogger(__name__)
TOKEN_DECIMALS = 6
CATEGORY_LABELS = dict(CATEGORIES)
SORT_CHOICES = [
    ("relevance", "Best match"),
    ("newest", "Newest"),
    ("price_asc", "Price: low to high"),
    ("price_desc", "Price: high to low"),
]
FILTER_KEYS = ("q", "category", "tag", "license", "format", "publisher", "price_min", "price_max", "sort")
PAGE_SIZE = 20
ANALYSING = (DatasetVersion.Analysis.PENDING, DatasetVersion.Analysis.RUNNING)


# Formatting ------------------------------------------------------------------------------------


def format_usdc(base_units) -> str:
    """Token base units (6 decimals) as a USDC amount: 25000000 -> "25", 1500000 -> "1.5"."""
    if base_units is None:
        return ""
    units = int(base_units)
    sign = "-" if units < 0 else ""
    whole, frac = divmod(abs(units), 10**TOKEN_DECIMALS)
    text = f"{whole:,}"
    frac_text = str(frac).rjust(TOKEN_DECIMALS, "0").rstrip("0")
    return f"{sign}{text}.{frac_text}" if frac_text else f"{sign}{text}"


def usdc_input(base_units) -> str:
    """The same amount for a form field (no thousands separators)."""
    return format_usdc(base_units).replace(",", "") if base_units is not None else ""


def human_size(size) -> str:
    if size is None:
        return ""
    value = float(size)
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{int(value):,} {unit}" if unit == "bytes" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{size} bytes"


def format_stat(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if value.is_integer() and abs(value) < 1e15:
            return f"{int(value):,}"
        return f"{value:,.4g}" if abs(value) >= 1e6 or abs(value) < 1e-3 else f"{value:,.3f}".rstrip("0").rstrip(".")
    if isinstance(value, int):
        return f"{value:,}"
    text = str(value)
    return text if len(text) <= 40 else text[:39] + "…"


# Pieces shared by the pages --------------------------------------------------------------------


def latest_listing(version):
    if version is None:
        return None
    return max(version.listings.all(), key=lambda l: l.block_number, default=None)


def current_version(dataset):
    return max(dataset.versions.all(), key=lambda v: v.number, default=None)


def format_window(seconds) -> str:
    """A dispute window in words: 259200 -> "3 days", 5400 -> "1.5 hours"."""
    if seconds is None:
        return ""
    seconds = int(seconds)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            amount = seconds / size
            text = f"{amount:g}" if amount.is_integer() else f"{amount:.1f}"
            return f"{text} {unit}{'' if text == '1' else 's'}"
    return f"{seconds} second{'' if seconds == 1 else 's'}"


def version_view(version, *, public=True):
    """A version with the figures its templates show, already formatted: what the public sees of
    it (catalog.preview), or, with public=False, everything (for its owner's edit page)."""
    if version is None:
        return None
    listing = latest_listing(version)
    price = listing.price if listing is not None else version.price
    analysing = version.analysis_status in ANALYSING
    source_columns = public_columns(version) if public else version.columns or []
    columns = []
    for column in source_columns:
        histogram = column.get("histogram") or []
        approx = "≈" if column.get("sampled") else ""  # counted on a sample of a big file, scaled
        peak = max((bin_.get("count") or 0 for bin_ in histogram), default=0)
        bars = [
            {
                "height": max(2, round(100 * (bin_.get("count") or 0) / peak)) if peak else 2,
                "label": f"{format_stat(bin_.get('start'))} – {format_stat(bin_.get('end'))}: "
                + (f"{approx}{format_stat(bin_.get('count'))}" if bin_.get("count") is not None
                   else f"fewer than {MIN_PUBLIC_COUNT}"),
            }
            for bin_ in histogram
        ]
        top = column.get("top_values") or []
        top_peak = max((t.get("count") or 0 for t in top), default=0)
        columns.append({
            "name": column.get("name", ""),
            "type": column.get("type", ""),
            "duckdb_type": column.get("duckdb_type", ""),
            "null_count": format_stat(column.get("null_count")),
            "distinct_count": format_stat(column.get("distinct_count")),
            "min": format_stat(column.get("min")),
            "max": format_stat(column.get("max")),
            "mean": format_stat(column.get("mean")) if column.get("mean") is not None else "",
            "has_range": column.get("min") is not None or column.get("max") is not None,
            "bars": bars,
            "sampled": bool(approx),
            "top_values": [
                {"value": format_stat(t.get("value")), "count": approx + format_stat(t.get("count")),
                 "width": max(3, round(100 * (t.get("count") or 0) / top_peak)) if top_peak else 3}
                for t in top[:5]
            ],
        })
    rows = public_sample(version) if public else [r for r in version.sample or [] if isinstance(r, dict)]
    names = [c["name"] for c in columns]
    if not names and rows:
        names = list(rows[0].keys())
    sample = [[format_sample(row.get(name)) for name in names] for row in rows]
    return {
        "obj": version,
        "number": version.number,
        "format": version.format,
        "original_name": version.original_name,
        "size": human_size(version.size),
        "row_count": f"{version.row_count:,}" if version.row_count is not None else None,
        "content_hash": version.content_hash,
        "price": format_usdc(price),
        "price_input": usdc_input(price),
        "token": version.token,
        "status": version.analysis_status,
        "status_label": version.get_analysis_status_display(),
        "analysing": analysing,
        "progress": round(100 * (version.analysis_progress or 0)),
        "message": public_analysis_message(version) if public else version.analysis_message,
        # The owner reads why rows were rejected ("Analysed with N rejected rows: <reason>" -> the
        # reason; the count has its own line); the reason quotes the file, so the public does not.
        "reject_reason": "" if public else version.analysis_message.split(": ", 1)[1]
        if version.analysis_message.startswith("Analysed with") and ": " in version.analysis_message
        else version.analysis_message,
        "rejected_rows": f"{version.rejected_rows:,}",
        "listing": listing,
        "dispute_window": format_window(listing.dispute_window) if listing is not None else "",
        "columns": columns,
        "sample_columns": names,
        "sample": sample,
        "created_at": version.created_at,
        "review": version.review,
        "review_label": ("Not listed yet" if version.review == DatasetVersion.Review.PENDING and listing is None
                         else version.get_review_display()),
        "public": revisions.is_public(version),
        "show_sample": version.show_sample,
        "show_distributions": version.show_distributions,
        "hidden_columns": list(version.hidden_columns or []),
    }


def format_sample(value) -> str | None:
    if value is None:
        return None  # shown as a muted "null"
    if isinstance(value, (dict, list)):
        import json

        value = json.dumps(value, ensure_ascii=False)
    text = str(value)
    return text if len(text) <= 120 else text[:119] + "…"


def dataset_card(dataset):
    """A dataset's card from the model (its versions and listings prefetched): the search
    result's card, plus the version and status the publisher's pages show."""
    version = current_version(dataset)
    listing = latest_listing(version)
    owner = dataset.owner
    card = result_card({
        "slug": dataset.slug, "title": dataset.title, "summary": dataset.summary, "tags": dataset.tags,
        "category": dataset.category, "license": dataset.license,
        "owner_address": owner.address, "owner_username": owner.username,
        "owner_display_name": owner.display_name, "owner_avatar_digest": owner.avatar_digest,
        "price": None if version is None else (listing.price if listing is not None else version.price),
        "format": version.format if version is not None else None,
        "row_count": version.row_count if version is not None else None,
    })
    card.update(obj=dataset, version=version, status=dataset.status, status_label=dataset.get_status_display())
    return card


def result_card(row):
    """A search result's card from `listed_rows` (plain values, one query for the whole page)."""
    publisher = row["owner_address"] or row["owner_username"]
    return {
        "slug": row["slug"],
        "title": row["title"],
        "summary": row["summary"],
        "tags": row["tags"],
        "category": CATEGORY_LABELS.get(row["category"], row["category"]),
        "license": row["license"],
        "publisher": publisher,
        "publisher_short": short_address(publisher),
        "publisher_name": row["owner_display_name"],
        "publisher_avatar": avatars.url_for(row["owner_address"], row["owner_avatar_digest"]),
        "price": format_usdc(row["price"]) if row["price"] is not None else None,
        "format": row["format"],
        "row_count": f"{row['row_count']:,}" if row["row_count"] is not None else None,
    }


# Catalog ---------------------------------------------------------------------------------------


def _query_string(params: dict, **changes) -> str:
    merged = {k: v for k, v in params.items() if k != "page"}  # a new filter starts at page 1
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    pairs = []
    for key in (*FILTER_KEYS, "page"):
        value = merged.get(key)
        if value in (None, "", []):
            continue
        if key == "sort" and value == "relevance":
            continue
        if key == "page" and str(value) == "1":
            continue
        for item in value if isinstance(value, list) else [value]:
            pairs.append((key, item))
    return "?" + urlencode(pairs) if pairs else "?"


@ensure_csrf_cookie  # the wallet script sends the CSRF token with its sign-in and sign-out calls
def catalog(request):
    from marketplace.catalog.indexing import listed_rows, reader
    from marketplace.catalog.search import MAX_OFFSET

    # The form submits every field; empty ones mean "no filter". Unknown parameters are ignored.
    raw = {}
    for key in (*FILTER_KEYS, "page"):
        if key == "tag":
            tags = [t.strip() for t in request.GET.getlist("tag") if t.strip()]
            if tags:
                raw["tag"] = tags
        else:
            value = request.GET.get(key, "").strip()
            if value:
                raw[key] = value
    form = SearchParams(data={**raw, "page_size": PAGE_SIZE})
    errors = {}
    params = {}
    if form.is_valid():
        params = form.validated_data
    else:
        for field, messages in form.errors.items():
            errors[field] = " ".join(str(m) for m in messages)
    current = {k: raw.get(k) for k in FILTER_KEYS}
    current["tag"] = raw.get("tag", [])
    context = {
        "current": current,
        "errors": errors,
        "error_fields": {"q": "Search", "category": "Category", "tag": "Tag", "license": "License",
                         "format": "Format", "publisher": "Publisher", "price_min": "Min price",
                         "price_max": "Max price", "sort": "Sort", "page": "Page", "non_field_errors": "Search"},
        "categories": CATEGORIES,
        "licenses": LICENSES,
        "sorts": SORT_CHOICES,
        "index_ready": True,
        "results": [],
        "total": 0,
        "facets": {},
        "has_filters": any(current.get(k) for k in FILTER_KEYS if k not in ("sort",)),
    }
    if errors:
        return render(request, "web/catalog.html", context)

    try:
        index = reader()
    except Exception:  # e.g. an index of an older schema, waiting for its rebuild
        logger.exception("search index unavailable")
        index = None
    if index is None:
        context["index_ready"] = False
        return render(request, "web/catalog.html", context)

    page = params["page"]
    result = index.search(SearchParams.query(params))  # page_size is PAGE_SIZE
    rows = listed_rows(result.ids)
    pages = max(1, min(math.ceil(result.total / PAGE_SIZE), MAX_OFFSET // PAGE_SIZE + 1))
    facets = {}
    for name, counts in result.facets.items():
        key = "tag" if name == "tags" else name
        items = []
        for value, count in counts:
            if key == "tag":
                active = value in current["tag"]
                tags = [t for t in current["tag"] if t != value] if active else [*current["tag"], value]
                url = _query_string(current, tag=tags)
            else:
                active = current.get(key) == value
                url = _query_string(current, **{key: None if active else value})
            label = CATEGORY_LABELS.get(value, value) if key == "category" else value
            items.append({"value": value, "label": label, "count": f"{count:,}", "active": active, "url": url})
        facets[name] = items
    context.update(
        results=[result_card(rows[i]) for i in result.ids if i in rows],
        total=result.total,
        total_text=f"{result.total:,}",
        page=page,
        pages=pages,
        capped=math.ceil(result.total / PAGE_SIZE) > pages,
        prev_url=_query_string(current, page=page - 1) if page > 1 else None,
        next_url=_query_string(current, page=page + 1) if page < pages else None,
        facets=facets,
        active_tags=[{"value": t, "url": _query_string(current, tag=[x for x in current["tag"] if x != t])}
                     for t in current["tag"]],
        clear_url="/",
    )
    return render(request, "web/catalog.html", context)


@require_safe
def favicon(request):
    """/favicon.ico, which browsers ask for on pages that name no icon (the admin's)."""
    return HttpResponsePermanentRedirect(static("favicon.svg"))


@ensure_csrf_cookie
def about(request):
    return render(request, "web/home.html")


# Dataset page ----------------------------------------------------------------------------------


@ensure_csrf_cookie
def dataset_detail(request, slug):
    dataset = (
        visible_datasets(request.user).select_related("owner").prefetch_related("versions__listings")
        .filter(slug=slug).first()
    )
    if dataset is None:
        raise Http404("No such dataset.")
    card = dataset_card(dataset)
    is_owner = request.user.is_authenticated and dataset.owner_id == request.user.pk
    versions = sorted(dataset.versions.all(), key=lambda v: v.number, reverse=True)
    public = [v for v in versions if revisions.is_public(v)]
    # Everyone sees what the public sees; the owner of a dataset with nothing public yet sees its
    # latest version as the public will, once approved.
    shown = public or (versions if is_owner else [])
    waiting = []
    if is_owner:
        waiting = list(DatasetRevision.objects.filter(dataset=dataset, status__in=DatasetRevision.OPEN)
                       .select_related("version").order_by("created_at", "id"))
    current = version_view(shown[0]) if shown else None
    return render(request, "web/dataset.html", {
        "dataset": dataset,
        "card": card,
        "version": current,
        "buy": buy_view(request, current, is_owner=is_owner),
        "explorer_url": settings.EXPLORER_URL,
        "older_versions": [version_view(v) for v in shown[1:]],
        "is_owner": is_owner,
        "waiting": waiting,
        "unpublished_versions": [v.number for v in versions if is_owner and not revisions.is_public(v)],
        "category_label": CATEGORY_LABELS.get(dataset.category, dataset.category),
    })


# Buying, the buyer's library, the publisher's sales ----------------------------------------------


def explorer_link(kind: str, value: str) -> str | None:
    """<EXPLORER_URL>/tx/<hash> or /address/<address>, when an explorer is configured."""
    return f"{settings.EXPLORER_URL}/{kind}/{value}" if settings.EXPLORER_URL and value else None


def buy_view(request, version, *, is_owner):
    """What the buy card shows: `state` is "bought" (the signed-in wallet holds a live order of
    the version, as the indexer read it), "buyable", "not_for_sale", "unlisted", "owner" or "banned"
    (the signed-in wallet is banned from buying); the
    page's script then buys through the wallet (frontend/src/buy.js)."""
    if version is None:
        return {"state": "unlisted"}
    listing = version["listing"]
    address = request.user.address if request.user.is_authenticated else ""
    view = {"listing": listing, "address": address or "", "order": None,
            "price_units": str(int(listing.price)) if listing is not None else "",
            "token": listing.token if listing is not None else version["token"]}
    paid = paid_listing(address, version["obj"]) if address else None
    if paid is not None:
        live = orders.paid_orders(address, paid[0], [paid[1]])
        order = live.order_by("-block_number", "-log_index").first()
        view.update(state="bought", order=order)
    elif is_owner:
        view["state"] = "owner"
    elif address and bans.is_banned(address, bans.BUY):
        view["state"] = "banned"
    elif listing is None:
        view["state"] = "unlisted"
    elif not (listing.active and listing.approved) or not version["public"]:
        view["state"] = "not_for_sale"
    else:
        view["state"] = "buyable"
    return view


STATUS_WORDS = {
    Order.Status.OPEN: "In escrow",
    Order.Status.DISPUTED: "Disputed",
    Order.Status.RELEASED: "Paid to the seller",
    Order.Status.RESOLVED: "Resolved by the arbiter",
    Order.Status.REFUNDED: "Refunded",
}


def order_view(order, version, said, *, now):
    """An order as the library and the sales pages show it: amounts formatted from base units,
    what may be done with it now, links to its transactions, the parties' statements."""
    listing = latest_listing(version) if version is not None else None
    amount, fee_bps = int(order.amount), int(order.fee_bps)
    expected_fee = amount * fee_bps // 10_000
    bought_at = (order.release_at - timedelta(seconds=listing.dispute_window)
                 if listing is not None and listing.dispute_window is not None else None)
    by_role = {row.role: row for row in said}
    return {
        "obj": order,
        "order_id": str(order.order_id),
        "status": order.status,
        "status_label": STATUS_WORDS.get(order.status, order.status),
        "amount": format_usdc(amount),
        "fee": format_usdc(order.fee if order.status != Order.Status.OPEN else expected_fee),
        "owner_amount": format_usdc(order.owner_amount),
        "refund": format_usdc(order.refund),
        "expected_owner": format_usdc(amount - expected_fee),
        "buyer": order.buyer,
        "buyer_short": short_address(order.buyer),
        "dataset": version.dataset if version is not None else None,
        "version": version,
        "can_download": version is not None and order.status != Order.Status.REFUNDED,
        "bought_at": bought_at,
        "release_at": order.release_at,
        "window_open": order.status == Order.Status.OPEN and now < order.release_at,
        "can_confirm": order.status == Order.Status.OPEN,
        "dispute_deadline": order.dispute_deadline,
        "tx_hash": order.tx_hash,
        "tx_url": explorer_link("tx", order.tx_hash),
        "settled_tx_hash": order.settled_tx_hash,
        "settled_url": explorer_link("tx", order.settled_tx_hash),
        "buyer_statement": by_role.get("buyer"),
        "seller_statement": by_role.get("seller"),
    }


def return_view(row) -> dict:
    """Money the wallet sent to the market without an order, as the library shows it."""
    return {"obj": row, "amount": format_usdc(int(row.amount)), "status": row.status,
            "status_label": row.get_status_display(), "kind_label": row.get_kind_display(),
            "tx_hash": row.tx_hash, "tx_url": explorer_link("tx", row.tx_hash),
            "return_tx_hash": row.return_tx_hash, "return_url": explorer_link("tx", row.return_tx_hash)}


def _order_views(pairs):
    pairs = list(pairs)
    said = orders.statements([o for o, _ in pairs])
    now = timezone.now()
    return [order_view(o, v, said.get(orders.statement_key(o), []), now=now)
            for o, v in pairs]


@ensure_csrf_cookie
def library(request):
    """The signed-in wallet's purchases: download, confirm, dispute with a statement."""
    if not request.user.is_authenticated:
        return _sign_in_prompt(request, "Your library", audience="buyers")
    address = request.user.address
    views = _order_views(orders.library(address)) if address else []
    returns = [return_view(row) for row in strays.of_payer(address)[:100]] if address else []
    return render(request, "web/library.html", {
        "orders": views,
        "returns": returns,
        "disputed": [v for v in views if v["status"] == Order.Status.DISPUTED],
        "open_count": sum(1 for v in views if v["status"] == Order.Status.OPEN),
    })


@ensure_csrf_cookie
def sales(request):
    """The orders of the signed-in publisher's listings, earnings pending and paid, credits to
    withdraw, payouts, and the disputes to answer."""
    if not request.user.is_authenticated:
        return _sign_in_prompt(request, "Your sales", audience="publishers")
    views = _order_views(orders.sales(request.user))
    pending = sum(int(v["obj"].amount) - int(v["obj"].amount) * int(v["obj"].fee_bps) // 10_000
                  for v in views if v["status"] in (Order.Status.OPEN, Order.Status.DISPUTED))
    paid = sum(int(v["obj"].owner_amount) for v in views
               if v["status"] in (Order.Status.RELEASED, Order.Status.RESOLVED))
    refunded = sum(int(v["obj"].refund) for v in views)
    address = request.user.address or ""
    balances = orders.credit_balances(address, settings.CHAIN_ID) if address else []
    entries = list(orders.credit_entries(address, settings.CHAIN_ID)[:50]) if address else []
    payouts = [v for v in views if v["status"] in (Order.Status.RELEASED, Order.Status.RESOLVED)]
    return render(request, "web/sales.html", {
        "orders": views,
        "disputed": [v for v in views if v["status"] == Order.Status.DISPUTED],
        "pending": format_usdc(pending),
        "paid": format_usdc(paid),
        "refunded": format_usdc(refunded),
        "pending_count": sum(1 for v in views if v["status"] in (Order.Status.OPEN,
                                                                  Order.Status.DISPUTED)),
        "paid_count": len(payouts),
        "credits": [{**c, "balance_text": format_usdc(c["balance"]),
                     "token_url": explorer_link("address", c["token"])}
                    for c in balances if c["balance"] > 0],
        "credits_total": format_usdc(sum(c["balance"] for c in balances)),
        "credit_entries": [{"obj": e, "amount": format_usdc(e.amount),
                            "tx_url": explorer_link("tx", e.tx_hash)} for e in entries],
        "payouts": payouts,
        "address": address,
    })


# Publisher pages -------------------------------------------------------------------------------


def _sign_in_prompt(request, title, audience="publishers"):
    return render(request, "web/sign_in_prompt.html", {"page_title": title, "audience": audience},
                  status=200)


@ensure_csrf_cookie
def my_datasets(request):
    if not request.user.is_authenticated:
        return _sign_in_prompt(request, "My datasets")
    datasets = (
        Dataset.objects.filter(owner=request.user).select_related("owner").prefetch_related("versions__listings")
        .order_by("-updated_at")
    )
    return render(request, "web/my_datasets.html", {"datasets": [dataset_card(d) for d in datasets]})


def _form_context(dataset=None, proposed=None):
    """The dataset form's context; `proposed` (the text waiting for review) fills the form
    instead of the public text, so the owner edits what they last asked for."""
    values = dict(proposed) if proposed else (
        {field: getattr(dataset, field) for field in revisions.PUBLIC_TEXT} if dataset is not None else {})
    return {
        "categories": CATEGORIES,
        "licenses": LICENSES,
        "dataset": dataset,
        "values": values,
        "tags_text": ", ".join(values.get("tags") or []),
    }


@ensure_csrf_cookie
def profile(request):
    if not request.user.is_authenticated:
        return _sign_in_prompt(request, "Your profile")
    from marketplace.accounts.avatars import SIZE

    return render(request, "web/profile.html", {
        "avatar_url": avatars.url(request.user),
        "avatar_size": SIZE,
        "max_avatar_size": human_size(settings.MAX_AVATAR_SIZE),
        "max_avatar_bytes": settings.MAX_AVATAR_SIZE,
        "saved": request.GET.get("saved") == "1",
    })


@ensure_csrf_cookie
def new_dataset(request):
    if not request.user.is_authenticated:
        return _sign_in_prompt(request, "New dataset")
    return render(request, "web/dataset_new.html", _form_context())


@ensure_csrf_cookie
def edit_dataset(request, slug):
    if not request.user.is_authenticated:
        return _sign_in_prompt(request, "Edit dataset")
    dataset = (
        Dataset.objects.filter(owner=request.user, slug=slug).select_related("owner")
        .prefetch_related("versions__listings").first()
    )
    if dataset is None:
        raise Http404("No such dataset of yours.")
    versions = sorted(dataset.versions.all(), key=lambda v: v.number, reverse=True)
    views = []
    for version in versions:
        view = version_view(version, public=False)
        proposed = revisions.proposed_preview(version)
        view.update(
            column_names=column_names(version),
            unmatched_hidden=unmatched_hidden(version),
            proposed_hidden=list(proposed.hidden_columns),
            proposed_sample=proposed.show_sample,
            proposed_distributions=proposed.show_distributions,
            public_preview=version_view(version),  # exactly what the public sees now
            preview_waiting=proposed.to_json() != {"hidden_columns": sorted(version.hidden_columns or []),
                                                   "show_sample": version.show_sample,
                                                   "show_distributions": version.show_distributions},
        )
        views.append(view)
    details = revisions.open_details(dataset) if revisions.is_published(dataset) else None
    latest = (DatasetRevision.objects.filter(dataset=dataset).exclude(status=DatasetRevision.Status.SUPERSEDED)
              .order_by("-created_at", "-id").first())
    return render(request, "web/dataset_edit.html", {
        **_form_context(dataset, proposed=details.changes if details else None),
        "details_revision": details,
        "latest_decision": latest if latest and latest.status in (
            DatasetRevision.Status.REJECTED, DatasetRevision.Status.CHANGES_REQUESTED) else None,
        "versions": views,
        "repriced": next((v for v in views if str(v["number"]) == request.GET.get("repriced")), None),
        "card": dataset_card(dataset),
        "token": default_token() or "",
        "price_input": views[0]["price_input"] if views else "",  # what the latest version sells for
        "uploaded": request.GET.get("uploaded") == "1",
        "created": request.GET.get("created") == "1",
        "saved": request.GET.get("saved") == "1",
        "previewed": request.GET.get("previewed") if request.GET.get("previewed") in ("1", "waiting") else None,
    })
