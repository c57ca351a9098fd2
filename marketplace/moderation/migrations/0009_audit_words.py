"""The audit search's word index: `moderation_auditword`, one row (word, entry id) for each
distinct word of each entry's `search` column, so that the entries having a word are read newest
first from the primary key (word, entry_id) and a page stops after 50, instead of collecting every
match through the GIN index and sorting them (a word in 5,000 entries: 2-18 ms; a common and a mid
word: 8-40 ms, at 1,000,000 entries; bench/audit.py).

The log's own insert keeps it: a statement-level AFTER INSERT trigger on moderation_auditentry
(through its transition table, so a COPY fills it as well) adds the new entries' words in the same
transaction. The log stays append-only and untouched: no foreign key points from the word table
into it (the flush of the test suite empties both, Django knowing the model). Entries are never
updated or deleted, so words never need to be removed. The words are exactly those the search's
`plainto_tsquery('simple', q)` matches (`tsvector_to_array(search)`). Built from the existing
entries here (1,000,000 entries: 5.3 million words, 11-17 s); the primary key is made after the
rows are in (faster at millions of rows)."""
from django.db import migrations, models

FORWARD = r"""
-- No entry is appended while the words are built (an entry committed between the backfill's
-- snapshot and the trigger's creation would have no words); held until the migration commits.
LOCK TABLE moderation_auditentry IN SHARE MODE;
CREATE TABLE moderation_auditword (word text NOT NULL, entry_id bigint NOT NULL);
INSERT INTO moderation_auditword (word, entry_id)
    SELECT word, e.id FROM moderation_auditentry e, unnest(tsvector_to_array(e.search)) AS word;
ALTER TABLE moderation_auditword ADD CONSTRAINT moderation_auditword_pkey PRIMARY KEY (word, entry_id);
-- As for the search column (0004): a rare word is told from a common one, so the planner starts
-- from the rarer of two words.
ALTER TABLE moderation_auditword ALTER COLUMN word SET STATISTICS 1000;
-- Vacuumed after every 10,000 new words (not a fifth of the table, the default), so the pages of
-- the newest entries, those the search reads most, are soon all-visible: their words are read from
-- the index alone.
ALTER TABLE moderation_auditword SET (autovacuum_vacuum_insert_scale_factor = 0,
                                      autovacuum_vacuum_insert_threshold = 10000);

-- As the table's owner (SECURITY DEFINER): the app's role needs only SELECT on the words, so it
-- cannot add or remove one itself (docs/moderation.md). Every name in it is qualified (the words'
-- table by the schema this migration runs in) and its search path is pg_catalog then pg_temp:
-- a definer function that looked names up in the caller's temporary schema, or in public, would
-- run a table or function the caller made there with the owner's rights.
DO $do$
BEGIN
    EXECUTE format($f$
        CREATE FUNCTION %1$I.moderation_audit_words() RETURNS trigger LANGUAGE plpgsql
            SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $body$
        BEGIN
            INSERT INTO %1$I.moderation_auditword (word, entry_id)
                SELECT w.word, n.id
                FROM new_entries n, pg_catalog.unnest(pg_catalog.tsvector_to_array(n.search)) AS w(word);
            RETURN NULL;
        END
        $body$$f$, current_schema());
END
$do$;
REVOKE ALL ON FUNCTION moderation_audit_words() FROM PUBLIC;
CREATE TRIGGER moderation_audit_words
    AFTER INSERT ON moderation_auditentry REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION moderation_audit_words();
"""

BACKWARD = r"""
DROP TRIGGER moderation_audit_words ON moderation_auditentry;
DROP FUNCTION moderation_audit_words();
DROP TABLE moderation_auditword;
"""


class Migration(migrations.Migration):
    atomic = False  # for the VACUUM
    dependencies = [("moderation", "0008_notification_event")]
    operations = [migrations.SeparateDatabaseAndState(
        # One string each (a list item is sent as it is, not split): FORWARD runs as one statement
        # list, all or nothing; then VACUUM, which a transaction cannot hold, sets the visibility
        # map at once (where autovacuum is off, nothing else would).
        database_operations=[migrations.RunSQL([FORWARD], [BACKWARD]),
                             migrations.RunSQL(["VACUUM (ANALYZE) moderation_auditword"], migrations.RunSQL.noop)],
        state_operations=[migrations.CreateModel(
            name="AuditWord",
            fields=[
                ("pk", models.CompositePrimaryKey("word", "entry_id", blank=True, editable=False, primary_key=True,
                                                  serialize=False)),
                ("word", models.TextField()),
                ("entry_id", models.BigIntegerField(help_text="An audit entry's id (no foreign key)")),
            ],
        )],
    )]
