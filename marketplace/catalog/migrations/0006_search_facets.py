from django.db import migrations

# Facet counts shared by the processes of a host (catalog.indexing.FacetStore): a cache, so
# UNLOGGED (not written to the WAL; emptied after a crash, which costs only recounts).
CREATE = """
CREATE UNLOGGED TABLE catalog_searchfacets (
    key text PRIMARY KEY,
    facets jsonb NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX catalog_searchfacets_expires_at ON catalog_searchfacets (expires_at);
"""


class Migration(migrations.Migration):

    dependencies = [
        ("catalog", "0005_rerender_descriptions"),
    ]

    operations = [
        migrations.RunSQL(CREATE, "DROP TABLE catalog_searchfacets;"),
    ]
