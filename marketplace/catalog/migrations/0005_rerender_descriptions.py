"""Re-render every stored description with today's renderer, which drops images: HTML stored
before it may still hold <img> tags pointing anywhere. Uses the live renderer on purpose (a
later change of the allowed tags adds a migration like this one)."""
from django.db import migrations

BATCH = 500


def rerender(apps, schema_editor):
    from marketplace.catalog.services import render_markdown

    Dataset = apps.get_model("catalog", "Dataset")
    changed = []
    for dataset in Dataset.objects.only("pk", "description", "description_html").iterator(chunk_size=BATCH):
        html = render_markdown(dataset.description)
        if html != dataset.description_html:
            dataset.description_html = html
            changed.append(dataset)
        if len(changed) >= BATCH:
            Dataset.objects.bulk_update(changed, ["description_html"])
            changed = []
    Dataset.objects.bulk_update(changed, ["description_html"])


class Migration(migrations.Migration):
    dependencies = [("catalog", "0004_revisions_previews_listing_terms")]

    operations = [migrations.RunPython(rerender, migrations.RunPython.noop)]
