"""Catalog actions: the only writers of datasets and versions."""
from pathlib import Path
import re

from django.conf import settings
from django.core.files import File
from django.core.files.storage import storages
from django.db import transaction
from django.utils.text import slugify
from eth_utils import to_checksum_address
from markdown_it import MarkdownIt
import nh3

from marketplace.outbox.services import enqueue

from .models import Dataset, DatasetVersion
from .uploads import TABULAR, ReceivedFile

_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")
ALLOWED_TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "code", "pre", "blockquote",
    "ul", "ol", "li", "a", "table", "thead", "tbody", "tr", "th", "td", "img",
}


def render_markdown(text: str) -> str:
    """Markdown to HTML that is safe to show: raw HTML is escaped by the parser, and nh3 keeps
    only harmless tags and attributes (no scripts, no event handlers, no javascript: URLs)."""
    return nh3.clean(
        _markdown.render(text or ""),
        tags=ALLOWED_TAGS,
        attributes={"a": {"href", "title"}, "img": {"src", "alt", "title"}, "th": {"align"}, "td": {"align"}},
        url_schemes={"http", "https", "mailto"},
        link_rel="nofollow noopener noreferrer",
    )


def normalise_tags(tags) -> list[str]:
    seen = []
    for tag in tags or []:
        tag = re.sub(r"\s+", "-", str(tag).strip().lower())[:40]
        if tag and tag not in seen:
            seen.append(tag)
    return seen[:20]


def unique_slug(title: str) -> str:
    base = slugify(title)[:100] or "dataset"
    slug, n = base, 1
    while Dataset.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


def create_dataset(*, owner, title, summary="", description="", tags=(), category="other", license, payout_address=None) -> Dataset:
    return Dataset.objects.create(
        owner=owner,
        slug=unique_slug(title),
        title=title,
        summary=summary,
        description=description,
        description_html=render_markdown(description),
        tags=normalise_tags(tags),
        category=category,
        license=license,
        payout_address=to_checksum_address(payout_address or owner.address),
    )


EDITABLE = ("title", "summary", "description", "tags", "category", "license", "payout_address")


def update_dataset(dataset: Dataset, **changes) -> Dataset:
    fields = []
    for field, value in changes.items():
        if field not in EDITABLE:
            raise ValueError(f"{field} cannot be edited")
        if field == "tags":
            value = normalise_tags(value)
        if field == "payout_address":
            value = to_checksum_address(value)
        setattr(dataset, field, value)
        fields.append(field)
    if "description" in changes:
        dataset.description_html = render_markdown(dataset.description)
        fields.append("description_html")
    dataset.save(update_fields=fields + ["updated_at"])
    return dataset


class _MovableFile(File):
    """Lets FileSystemStorage move the finished upload into place instead of copying it."""

    def temporary_file_path(self):
        return self.file.name


def add_version(dataset: Dataset, received: ReceivedFile, *, price: int, token: str) -> DatasetVersion:
    """Store a received file as the dataset's next version and queue its analysis. If anything
    fails, neither the stored file nor the row stays behind."""
    storage = storages["private"]
    stored_name = None
    try:
        with transaction.atomic():
            number = (Dataset.objects.select_for_update().get(pk=dataset.pk).versions.count()) + 1
            with open(received.path, "rb") as handle:
                stored_name = storage.save(
                    f"datasets/{dataset.pk}/v{number}/{Path(received.original_name).name}", _MovableFile(handle)
                )
            tabular = received.format in TABULAR.values()
            version = DatasetVersion.objects.create(
                dataset=dataset,
                number=number,
                file=stored_name,
                original_name=received.original_name,
                format=received.format,
                size=received.size,
                content_hash=received.content_hash,
                price=price,
                token=to_checksum_address(token),
                analysis_status=DatasetVersion.Analysis.PENDING if tabular else DatasetVersion.Analysis.NOT_TABULAR,
            )
            if tabular:
                enqueue("catalog.analyse_version", args=[version.pk])
    except BaseException:
        if stored_name:
            storage.delete(stored_name)
        raise
    finally:
        received.discard()
    return version


def analyse_version(version_id: int) -> None:
    """Run the DuckDB analysis of a version's file and store schema, statistics and sample.
    Idempotent: a finished analysis is not redone."""
    from .analysis import AnalysisFailed, analyse, to_json

    version = DatasetVersion.objects.filter(pk=version_id).first()
    if version is None or version.analysis_status not in (
        DatasetVersion.Analysis.PENDING, DatasetVersion.Analysis.RUNNING
    ):
        return
    Status = DatasetVersion.Analysis

    def progress(fraction, message):
        DatasetVersion.objects.filter(pk=version_id).update(
            analysis_status=Status.RUNNING, analysis_progress=fraction, analysis_message=message[:500]
        )

    progress(0.0, "reading the file")
    storage = storages["private"]
    try:
        path = storage.path(version.file)
    except NotImplementedError:  # a remote storage: analyse a local copy
        path = _local_copy(storage, version.file)
    try:
        result = analyse(path, version.format, progress=progress)
    except AnalysisFailed as failure:
        DatasetVersion.objects.filter(pk=version_id).update(
            analysis_status=Status.FAILED, analysis_progress=1.0, analysis_message=failure.reason[:500]
        )
        return
    data = to_json(result)
    rejected = data.get("rejected_rows", 0)
    DatasetVersion.objects.filter(pk=version_id).update(
        analysis_status=Status.DONE_WITH_REJECTS if rejected else Status.DONE,
        analysis_progress=1.0,
        analysis_message=(f"Analysed with {rejected:,} rejected rows: " + "; ".join(data.get("warnings", [])))[:500]
        if rejected else "",
        row_count=data["row_count"],
        rejected_rows=rejected,
        columns=data["columns"],
        sample=data["sample"],
    )


def _local_copy(storage, name):
    import shutil
    import tempfile

    target = tempfile.NamedTemporaryFile(dir=settings.UPLOAD_TMP_DIR, suffix=Path(name).suffix, delete=False)
    with storage.open(name, "rb") as source, target:
        shutil.copyfileobj(source, target, 1024 * 1024)
    return target.name
