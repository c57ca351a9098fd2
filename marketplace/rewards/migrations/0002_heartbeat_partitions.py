"""The heartbeat table, partitioned by day on received_at (see models.core.Heartbeat).

`rewards_heartbeat_partition(day)` creates one day's partition if it is missing; a default
partition catches any row whose day has none yet, so an insert never fails for want of one (the
maintenance task creates the coming days' partitions ahead and moves nothing)."""
from django.db import migrations

CREATE = """
CREATE TABLE rewards_heartbeat (
    device_id bigint NOT NULL,
    seq bigint NOT NULL,
    received_at timestamptz NOT NULL,
    slot bigint NOT NULL,
    probe_ok boolean NOT NULL,
    ip inet NULL,
    sent_at timestamptz NOT NULL,
    bytes_up bigint NOT NULL DEFAULT 0,
    bytes_down bigint NOT NULL DEFAULT 0,
    latency_ms integer NOT NULL DEFAULT 0,
    PRIMARY KEY (device_id, seq, received_at)
) PARTITION BY RANGE (received_at);
CREATE INDEX rewards_heartbeat_received ON rewards_heartbeat (received_at);
CREATE TABLE rewards_heartbeat_default PARTITION OF rewards_heartbeat DEFAULT;

CREATE FUNCTION rewards_heartbeat_partition(day date) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    name text := 'rewards_heartbeat_' || to_char(day, 'YYYYMMDD');
BEGIN
    IF to_regclass(name) IS NULL THEN
        EXECUTE format('CREATE TABLE %I PARTITION OF rewards_heartbeat FOR VALUES FROM (%L) TO (%L)',
                       name, (day::timestamp AT TIME ZONE 'UTC'), ((day + 1)::timestamp AT TIME ZONE 'UTC'));
    END IF;
    RETURN name;
END $$;
SELECT rewards_heartbeat_partition((now() AT TIME ZONE 'UTC')::date + d) FROM generate_series(-1, 2) AS d;
"""

DROP = """
DROP TABLE IF EXISTS rewards_heartbeat CASCADE;
DROP FUNCTION IF EXISTS rewards_heartbeat_partition(date);
"""


class Migration(migrations.Migration):

    dependencies = [
        ("rewards", "0001_core"),
    ]

    operations = [migrations.RunSQL(CREATE, DROP)]
