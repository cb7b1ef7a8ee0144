"""Database-level invariants that the ORM cannot express.

- Custody events are append-only: triggers refuse UPDATE (and DELETE on PostgreSQL;
  on SQLite a DELETE trigger would also block the test runner's flush, and SQLite is the
  single-user demo database).
- One identifier counter row per prefix, so allocation never has to create one.
"""

from django.db import migrations

PG_FORWARD = """
CREATE OR REPLACE FUNCTION biobank_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'append-only table %: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER custodyevent_append_only BEFORE UPDATE OR DELETE ON biobank_custodyevent
    FOR EACH ROW EXECUTE FUNCTION biobank_refuse_change();
"""
PG_REVERSE = """
DROP TRIGGER IF EXISTS custodyevent_append_only ON biobank_custodyevent;
DROP FUNCTION IF EXISTS biobank_refuse_change();
"""
SQLITE_FORWARD = """
CREATE TRIGGER custodyevent_no_update BEFORE UPDATE ON biobank_custodyevent
BEGIN SELECT RAISE(ABORT, 'append-only table biobank_custodyevent: UPDATE refused'); END;
"""
SQLITE_REVERSE = "DROP TRIGGER IF EXISTS custodyevent_no_update;"

PREFIXES = ["PT", "AS", "PR", "FR", "UN", "SU", "CT", "BX", "DS"]


def forward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_FORWARD, params=None)
    elif vendor == "sqlite":
        schema_editor.execute(SQLITE_FORWARD)
    IdSequence = apps.get_model("biobank", "IdSequence")
    for prefix in PREFIXES:
        IdSequence.objects.get_or_create(prefix=prefix, defaults={"last_number": 0})


def reverse(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_REVERSE, params=None)
    elif vendor == "sqlite":
        schema_editor.execute(SQLITE_REVERSE)


class Migration(migrations.Migration):
    dependencies = [("biobank", "0001_initial")]
    operations = [migrations.RunPython(forward, reverse)]
