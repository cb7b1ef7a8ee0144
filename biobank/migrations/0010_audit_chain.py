"""Hash-chained custody events, the chain head row, and TRUNCATE refused on PostgreSQL.

Existing events are chained in id order. SQLite rebuilds biobank_custodyevent for the
altered column and the new constraint, which drops its triggers: they are re-created last.
"""

import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

from biobank.models.events import CHAIN_FIELDS, GENESIS_HASH, chain_hash

PG_TRIGGERS = """
CREATE OR REPLACE FUNCTION biobank_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'append-only table %: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS custodyevent_append_only ON biobank_custodyevent;
CREATE TRIGGER custodyevent_append_only BEFORE UPDATE OR DELETE ON biobank_custodyevent
    FOR EACH ROW EXECUTE FUNCTION biobank_refuse_change();

-- TRUNCATE skips row triggers, so it needs its own. Only a session that says
-- SET biobank.allow_truncate = 'on' (the test runner's flush) may empty the log.
CREATE OR REPLACE FUNCTION biobank_refuse_truncate() RETURNS trigger AS $$
BEGIN
    IF coalesce(current_setting('biobank.allow_truncate', true), '') = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'append-only table %: TRUNCATE refused', TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS custodyevent_no_truncate ON biobank_custodyevent;
CREATE TRIGGER custodyevent_no_truncate BEFORE TRUNCATE ON biobank_custodyevent
    FOR EACH STATEMENT EXECUTE FUNCTION biobank_refuse_truncate();
DROP TRIGGER IF EXISTS auditchainhead_no_delete ON biobank_auditchainhead;
CREATE TRIGGER auditchainhead_no_delete BEFORE DELETE ON biobank_auditchainhead
    FOR EACH ROW EXECUTE FUNCTION biobank_refuse_change();
DROP TRIGGER IF EXISTS auditchainhead_no_truncate ON biobank_auditchainhead;
CREATE TRIGGER auditchainhead_no_truncate BEFORE TRUNCATE ON biobank_auditchainhead
    FOR EACH STATEMENT EXECUTE FUNCTION biobank_refuse_truncate();
"""
PG_REVERSE = """
DROP TRIGGER IF EXISTS custodyevent_no_truncate ON biobank_custodyevent;
DROP TRIGGER IF EXISTS auditchainhead_no_delete ON biobank_auditchainhead;
DROP TRIGGER IF EXISTS auditchainhead_no_truncate ON biobank_auditchainhead;
DROP FUNCTION IF EXISTS biobank_refuse_truncate();
"""
SQLITE_TRIGGERS = [
    "DROP TRIGGER IF EXISTS custodyevent_no_update;",
    """CREATE TRIGGER custodyevent_no_update BEFORE UPDATE ON biobank_custodyevent
BEGIN SELECT RAISE(ABORT, 'append-only table biobank_custodyevent: UPDATE refused'); END;""",
]


def chain_existing(apps, schema_editor):
    """Chain the events written before this migration, in id order (triggers off meanwhile)."""
    CustodyEvent = apps.get_model("biobank", "CustodyEvent")
    AuditChainHead = apps.get_model("biobank", "AuditChainHead")
    vendor = schema_editor.connection.vendor
    table = CustodyEvent._meta.db_table
    if vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE {table} DISABLE TRIGGER custodyevent_append_only")
    elif vendor == "sqlite":
        schema_editor.execute("DROP TRIGGER IF EXISTS custodyevent_no_update;")
    prev, last_id, count = GENESIS_HASH, None, 0
    rows = CustodyEvent.objects.order_by("id").values_list("id", *CHAIN_FIELDS)
    for row in rows.iterator(chunk_size=2000):
        row_hash = chain_hash(prev, dict(zip(CHAIN_FIELDS, row[1:], strict=True)))
        CustodyEvent.objects.filter(pk=row[0]).update(prev_hash=prev, row_hash=row_hash)
        prev, last_id, count = row_hash, row[0], count + 1
    AuditChainHead.objects.update_or_create(
        pk=1, defaults={"last_hash": prev, "last_event_id": last_id, "length": count}
    )
    if vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE {table} ENABLE TRIGGER custodyevent_append_only")


def triggers(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_TRIGGERS, params=None)
    elif vendor == "sqlite":
        for statement in SQLITE_TRIGGERS:
            schema_editor.execute(statement)


def triggers_reverse(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(PG_REVERSE, params=None)


class Migration(migrations.Migration):

    dependencies = [
        ('biobank', '0009_exportlog'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='AuditChainHead',
            fields=[
                ('id', models.PositiveSmallIntegerField(default=1, editable=False, primary_key=True, serialize=False)),
                ('last_event_id', models.BigIntegerField(blank=True, null=True)),
                ('last_hash', models.CharField(default='0000000000000000000000000000000000000000000000000000000000000000', max_length=64)),
                ('length', models.BigIntegerField(default=0)),
            ],
        ),
        migrations.AddField(
            model_name='custodyevent',
            name='prev_hash',
            field=models.CharField(default='', editable=False, max_length=64),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name='custodyevent',
            name='row_hash',
            field=models.CharField(default='', editable=False, max_length=64),
            preserve_default=False,
        ),
        migrations.AlterField(
            model_name='custodyevent',
            name='recorded_at',
            field=models.DateTimeField(default=django.utils.timezone.now, editable=False),
        ),
        migrations.RunPython(chain_existing, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name='custodyevent',
            constraint=models.UniqueConstraint(fields=('prev_hash',), name='custodyevent_prev_hash_unique'),
        ),
        migrations.AddConstraint(
            model_name='auditchainhead',
            constraint=models.CheckConstraint(condition=models.Q(('id', 1)), name='auditchainhead_single_row'),
        ),
        migrations.RunPython(triggers, triggers_reverse),
    ]
