"""Posted ledger rows are append-only in the database itself: UPDATE and DELETE of a ledger entry,
ledger line, allocation, charge line or payment are refused by a trigger (PostgreSQL and SQLite),
whatever the client. A mistake is corrected by a new document (reversal, adjustment), never by an
edit. (TRUNCATE, which Django's test flush uses on PostgreSQL, is not refused.) SQLite drops a
table's triggers when a migration remakes the table (any AlterField there): such a migration runs
`forwards` again (see 0005)."""

from django.db import migrations

TABLES = [
    "accounts_ledgerentry",
    "accounts_ledgerline",
    "accounts_allocation",
    "accounts_chargeline",
    "accounts_payment",
]

PG_FUNCTION = """
CREATE OR REPLACE FUNCTION accounts_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '% rows are posted and append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation',
              HINT = 'post a correcting document (reversal, adjustment) instead';
END;
$$ LANGUAGE plpgsql;
"""


def forwards(apps, schema_editor):
    conn = schema_editor.connection
    if conn.vendor == "postgresql":
        schema_editor.execute(PG_FUNCTION, None)  # no parameters: "%" is the format of RAISE
        for table in TABLES:
            schema_editor.execute(
                f'CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON "{table}" '
                "FOR EACH ROW EXECUTE FUNCTION accounts_append_only()"
            )
    elif conn.vendor == "sqlite":
        for table in TABLES:
            for op in ("UPDATE", "DELETE"):
                schema_editor.execute(
                    f'CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON "{table}" '
                    f"BEGIN SELECT RAISE(ABORT, '{table} rows are posted and append-only: {op} refused'); END"
                )


def backwards(apps, schema_editor):
    conn = schema_editor.connection
    if conn.vendor == "postgresql":
        for table in TABLES:
            schema_editor.execute(f'DROP TRIGGER IF EXISTS {table}_append_only ON "{table}"')
        schema_editor.execute("DROP FUNCTION IF EXISTS accounts_append_only()")
    elif conn.vendor == "sqlite":
        for table in TABLES:
            for op in ("update", "delete"):
                schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_no_{op}")


class Migration(migrations.Migration):
    dependencies = [("accounts", "0003_drop_redundant_indexes")]

    operations = [migrations.RunPython(forwards, backwards, elidable=False)]
