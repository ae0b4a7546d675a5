"""Rows read with hand-written SQL, built into model instances exactly as the ORM builds them.

For reads on the gateway's hot path: the ORM's query builder spends most of a call compiling the same query
again. A statement written once and a RowReader that knows each column's converters give the same instances
(`from_db()`, so models that remember their loaded state still do) for a fraction of the CPU.
"""

from collections.abc import Callable, Sequence
from datetime import datetime

from django.db import connections
from django.db.models import Model, QuerySet


class RowReader:
    """Builds instances of a model from its columns in a raw row, converting values as the ORM would.

    What `raw()` works out on every call (columns, field order, each field's database converters) is worked
    out once per database alias here; building the instance is then `from_db()` on converted values. The
    converters depend only on the backend and the settings, so one thread's serve every thread.
    """

    def __init__(self, model: type[Model], alias: str):
        database = connections[alias]
        self.model = model
        self.alias = alias
        fields = model._meta.concrete_fields
        self.attnames = [field.attname for field in fields]
        self.columns = [field.column for field in fields]
        self.converters = []
        for field in fields:
            column = field.get_col(model._meta.db_table)
            converters = database.ops.get_db_converters(column) + column.get_db_converters(database)
            self.converters.append((column, converters))

    def convert(self, index: int, value):
        """One column's value (the `index`-th of `columns`) as the ORM would give it."""
        database = connections[self.alias]
        column, converters = self.converters[index]
        for converter in converters:
            value = converter(value, column, database)
        return value

    def build(self, values: Sequence) -> Model:
        database = connections[self.alias]
        converted = []
        for value, (column, converters) in zip(values, self.converters):
            for converter in converters:
                value = converter(value, column, database)
            converted.append(value)
        return self.model.from_db(self.alias, self.attnames, converted)


class CompiledQuery:
    """A queryset built once with sample values, compiled once per database, then run with real values.

    The ORM states the rule (which rows, which annotations); this keeps the query builder off the hot path.
    `build(**samples)` must return the queryset (with `values_list()`); every sample must be a value no
    other parameter of the query takes, so that its place among the compiled parameters can be found.
    Datetime values are adapted for the database as the ORM adapts them.
    """

    def __init__(self, build: Callable[..., QuerySet], **samples):
        self.build = build
        self.samples = samples
        self._compiled: dict[str, tuple[str, list]] = {}

    def compiled(self, alias: str) -> tuple[str, list]:
        """The SQL and, per parameter, the sample's name it came from (or the fixed value)."""
        if alias not in self._compiled:
            database = connections[alias]
            sql, params = self.build(**self.samples).query.get_compiler(alias).as_sql()
            prepared = {name: self.prepare(database, value) for name, value in self.samples.items()}
            places = []
            for param in params:
                names = [name for name, value in prepared.items() if value == param]
                places.append(("sample", names[0]) if len(names) == 1 else ("fixed", param))
            missing = set(self.samples) - {name for kind, name in places if kind == "sample"}
            if missing:
                raise ValueError(f"The compiled query does not take {', '.join(sorted(missing))} as a parameter.")
            self._compiled[alias] = (sql, places)
        return self._compiled[alias]

    @staticmethod
    def prepare(database, value):
        return database.ops.adapt_datetimefield_value(value) if isinstance(value, datetime) else value

    def fetchone(self, alias: str, **values) -> tuple | None:
        database = connections[alias]
        sql, places = self.compiled(alias)
        params = [self.prepare(database, values[value]) if kind == "sample" else value for kind, value in places]
        with database.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()
