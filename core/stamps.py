"""Write stamps: a number for a table that every write to it changes, kept by the database's own triggers.

A list's total is a COUNT over every row the user may see: at 10,000 rows the largest part of a short page's
time on PostgreSQL (docs/benchmarks.md). core.rows.Pages reads the stamps of the tables a total counts in the
same statement as the page, and remembers the total with them; while a later page reads the same stamps, no row
of those tables was added, removed or changed, so the remembered total is what counting would give. Triggers
rather than Django's signals, so that every write counts: bulk writes, querysets' updates and deletes, raw SQL,
other processes.

A table's stamp starts at a random number when its triggers are made, or on the first write after its row was
deleted (a table emptied and written again, as a test database is between tests, does not repeat an earlier
stamp), then goes up by one for each write: on SQLite for each row, on PostgreSQL for each statement (TRUNCATE
too). A table without a stamp (no triggers, or its row
deleted) reads as NULL, and a total read with a NULL stamp is never remembered.
"""

from django.db.migrations.operations.base import Operation

STAMPS_TABLE = "core_writestamp"
# A stamp's first value: random below 2**52, so that adding one for each write never overflows 64 bits.
RANDOM_START = {"postgresql": "(random() * 4503599627370496)::bigint", "sqlite": "abs(random()) >> 12"}
# PostgreSQL: one function for every stamped table, which names itself to the trigger (TG_TABLE_NAME).
POSTGRESQL_FUNCTION = f"""
CREATE OR REPLACE FUNCTION core_stamp_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {STAMPS_TABLE} (table_name, stamp) VALUES (TG_TABLE_NAME, {RANDOM_START['postgresql']})
    ON CONFLICT (table_name) DO UPDATE SET stamp = {STAMPS_TABLE}.stamp + 1;
    RETURN NULL;
END
$$
"""


SQLITE_EVENTS = ("insert", "update", "delete")  # SQLite has a trigger for each, PostgreSQL one for them all


def trigger_name(table: str, event: str = "write") -> str:
    return f"{table}_stamp_{event}"


def create_triggers(vendor: str, table: str) -> list[str]:
    """The statements that give `table` its stamp and make every write to it change the stamp."""
    if vendor not in RANDOM_START:
        return []  # another database: no stamps, so totals are counted every time
    first = (f"INSERT INTO {STAMPS_TABLE} (table_name, stamp) VALUES ('{table}', {RANDOM_START[vendor]}) "
             f"ON CONFLICT (table_name) DO NOTHING")
    if vendor == "postgresql":
        return [first, POSTGRESQL_FUNCTION,
                f'CREATE TRIGGER "{trigger_name(table)}" AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON "{table}" '
                f"FOR EACH STATEMENT EXECUTE FUNCTION core_stamp_write()"]
    if vendor == "sqlite":
        return [first, *(f'CREATE TRIGGER "{trigger_name(table, event)}" AFTER {event.upper()} ON "{table}" BEGIN '
                f"INSERT INTO {STAMPS_TABLE} (table_name, stamp) VALUES ('{table}', {RANDOM_START[vendor]}) "
                f"ON CONFLICT (table_name) DO UPDATE SET stamp = stamp + 1; END"
                for event in SQLITE_EVENTS)]


def drop_triggers(vendor: str, table: str) -> list[str]:
    if vendor == "postgresql":
        names = [trigger_name(table)]
    elif vendor == "sqlite":
        names = [trigger_name(table, event) for event in SQLITE_EVENTS]
    else:
        names = []
    on = f' ON "{table}"' if vendor == "postgresql" else ""
    return [*(f'DROP TRIGGER IF EXISTS "{name}"{on}' for name in names),
            f"DELETE FROM {STAMPS_TABLE} WHERE table_name = '{table}'"]


class StampWrites(Operation):
    """A migration's operation: every write to `table` changes its write stamp from now on."""

    reversible = True

    def __init__(self, table: str):
        self.table = table

    def deconstruct(self):
        return "core.stamps.StampWrites", [self.table], {}

    def state_forwards(self, app_label, state) -> None:
        pass  # triggers are not part of the models' state

    def database_forwards(self, app_label, schema_editor, from_state, to_state) -> None:
        for statement in create_triggers(schema_editor.connection.vendor, self.table):
            schema_editor.execute(statement, params=None)

    def database_backwards(self, app_label, schema_editor, from_state, to_state) -> None:
        for statement in drop_triggers(schema_editor.connection.vendor, self.table):
            schema_editor.execute(statement, params=None)

    def describe(self) -> str:
        return f"Stamp every write to {self.table}"
