"""Finer statistics of the search column's words, so that PostgreSQL tells a rare word (a few
entries: read them through the GIN index) from a common one (read the newest entries by id until
50 match). With the default, a word outside the most common ~1,000 is estimated at a fraction of a
percent: a rare word's search read the whole log backwards (1.6 s at 1,000,000 entries, against
0.1 ms through the index; bench/audit.py)."""
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("moderation", "0003_roles")]
    operations = [migrations.RunSQL(
        "ALTER TABLE moderation_auditentry ALTER COLUMN search SET STATISTICS 1000",
        "ALTER TABLE moderation_auditentry ALTER COLUMN search SET STATISTICS -1")]
