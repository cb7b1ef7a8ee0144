"""Re-create the append-only trigger on SQLite.

SQLite cannot ALTER a constraint, so Django rebuilt biobank_custodyevent in 0005 (new table,
copy, rename) and the rebuild drops triggers. PostgreSQL keeps its trigger; it is re-created
there too so that both databases end in the same state whatever ran before.
Any later migration that alters this table must re-create the trigger the same way.
"""

from django.db import migrations

PG = """
CREATE OR REPLACE FUNCTION biobank_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'append-only table %: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS custodyevent_append_only ON biobank_custodyevent;
CREATE TRIGGER custodyevent_append_only BEFORE UPDATE OR DELETE ON biobank_custodyevent
    FOR EACH ROW EXECUTE FUNCTION biobank_refuse_change();
"""
SQLITE = [
    "DROP TRIGGER IF EXISTS custodyevent_no_update;",
    """CREATE TRIGGER custodyevent_no_update BEFORE UPDATE ON biobank_custodyevent
BEGIN SELECT RAISE(ABORT, 'append-only table biobank_custodyevent: UPDATE refused'); END;""",
]


def forward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG, params=None)
    elif vendor == "sqlite":
        for statement in SQLITE:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("biobank", "0005_release")]
    operations = [migrations.RunPython(forward, migrations.RunPython.noop)]
