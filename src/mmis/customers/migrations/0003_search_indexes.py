"""Trigram indexes (prefix search uses the varchar_pattern_ops `_like` indexes Django makes) for substring search of names and addresses on PostgreSQL (1M customers).

SQLite has no trigram index; there the search falls back to prefix/LIKE scans, fine at demo size.
"""

from django.db import migrations

PG_SQL = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX IF NOT EXISTS customers_customer_name_trgm ON customers_customer USING gin (name gin_trgm_ops)",
    "CREATE INDEX IF NOT EXISTS customers_address_full_trgm "
    "ON customers_serviceaddress USING gin (full_text gin_trgm_ops)",
]
PG_REVERSE = [
    "DROP INDEX IF EXISTS customers_customer_name_trgm",
    "DROP INDEX IF EXISTS customers_address_full_trgm",
]


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for sql in PG_SQL:
            schema_editor.execute(sql)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for sql in PG_REVERSE:
            schema_editor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [("customers", "0002_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
