"""Rows read with hand-written SQL, built into model instances exactly as the ORM builds them.

For reads on the gateway's hot path: the ORM's query builder spends most of a call compiling the same query
again. A statement written once and a RowReader that knows each column's converters give the same instances
(`from_db()`, so models that remember their loaded state still do) for a fraction of the CPU.
"""

import re
import sqlite3
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from datetime import timezone as dt_timezone
from functools import cache, partial
from threading import Lock
from typing import Any

import orjson

from django.apps import apps
from django.conf import settings
from django.db import connections
from django.db.models import Func, IntegerField, Model, QuerySet, Subquery
from django.db.models.expressions import Star
from django.db.models.fields.json import JSONField, KeyTransform
from django.utils.dateparse import parse_datetime

from .models import WriteStamp


PLACEHOLDER = re.compile(r"(?<!%)%s")  # as Django's SQLite backend finds them


def by_name(vendor: str, sql: str) -> tuple[str, tuple[str, ...] | None]:
    """A statement written with `%s` placeholders, as `run()` sends it, and the names of its parameters.

    Django's SQLite cursor rewrites each `%s` to `?` with a regular expression on every execute: tens of
    microseconds for a statement of the gateway's size. Parameters passed by name are put in place by `%`
    formatting instead, several times cheaper; so on SQLite a statement run often is written with named
    placeholders once. Other backends take it as it is (None: the parameters stay a list).
    """
    if vendor != "sqlite":
        return sql, None
    names: list[str] = []

    def name(match: re.Match) -> str:
        names.append(f"p{len(names)}")
        return f"%({names[-1]})s"

    return PLACEHOLDER.sub(name, sql), tuple(names)


def statement_cursor(database):
    """A cursor of `database` (Django's, so its queries are counted and its errors wrapped) for a statement that
    is run again and again with other values.

    On PostgreSQL the statement is sent with its parameters apart and prepared on the connection the first time
    (`DATABASE_PREPARED_STATEMENTS`): a pooled connection serves many requests, and each later run skips parsing
    and (once the server settles on a generic plan) planning, which cost as much as running the list's
    statements. Django's own cursors interpolate the values into the text and prepare nothing.
    """
    if database.vendor != "postgresql" or not settings.DATABASE_PREPARED_STATEMENTS:
        return database.cursor()
    database.close_if_health_check_failed()
    database.ensure_connection()
    with database.wrap_database_errors:
        cursor = prepared_cursor_class()(database.connection)
        register_timezone(database, cursor)
        return database._prepare_cursor(cursor)


@cache
def prepared_cursor_class():
    """Django's server-binding psycopg cursor that prepares every statement it executes (made on first use: the
    module imports psycopg, which SQLite does not need)."""
    from django.db.backends.postgresql.base import ServerBindingCursor

    class PreparedCursor(ServerBindingCursor):
        def execute(self, query, params=None, *, prepare=None, binary=None):
            return super().execute(query, params, prepare=True, binary=binary)

    return PreparedCursor


def register_timezone(database, cursor) -> None:
    """What Django's create_cursor() does for a cursor of its own: read timestamps in the connection's zone.

    In UTC (Django's zone for its connections whenever USE_TZ is on) through psycopg's own loader, which gives
    them in the session's zone, UTC, already: compiled with psycopg[binary], it costs a fraction of Django's
    loader (Python, parsing each value and then replacing its zone), which was a large share of a PostgreSQL
    list's work (docs/benchmarks.md). Django's loader stays on its own cursors, whose set-up reads its zone.
    """
    from django.db.backends.postgresql.base import TIMESTAMPTZ_OID
    from django.db.backends.postgresql.psycopg_any import register_tzloader
    from psycopg.pq import Format

    if database.timezone is dt_timezone.utc and database.connection.pgconn.parameter_status(b"TimeZone") == b"UTC":
        cursor.adapters.register_loader(TIMESTAMPTZ_OID, utc_timestamp_loader())
        return
    loader = database.connection.adapters.get_loader(TIMESTAMPTZ_OID, Format.TEXT)
    if database.timezone != loader.timezone:
        register_tzloader(database.timezone, cursor)


@cache
def utc_timestamp_loader():
    """psycopg's own timestamptz loader (its compiled one when psycopg[binary] is installed)."""
    from django.db.backends.postgresql.base import TIMESTAMPTZ_OID
    from psycopg import postgres
    from psycopg.pq import Format

    return postgres.adapters.get_loader(TIMESTAMPTZ_OID, Format.TEXT)


def run(cursor, sql: str, names: tuple[str, ...] | None, params: Sequence) -> None:
    """Execute a statement from `by_name()` with its parameters in order."""
    cursor.execute(sql, params if names is None else dict(zip(names, params)))


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

    def select_list(self, table: str) -> list[str]:
        """The columns as a statement selects them from `table` (its alias), for `build()` and `convert()`.

        SQLite's driver converts a column whose declared type is a datetime or a boolean, in Python, on every row
        fetched, before any converter here runs. Such a column is selected as an expression (`+column`, which
        has no declared type), so that the driver hands its value over as stored and only the rows that are built
        are converted, by the ORM's converters (as it converts an annotation). A row read for a few columns only,
        as a destination that a call does not go to, then costs next to nothing.
        """
        database = connections[self.alias]
        quote = database.ops.quote_name
        columns = [f"{table}.{quote(column)}" for column in self.columns]
        if database.vendor != "sqlite":
            return columns
        converted = {name.lower() for name in sqlite3.converters}
        for index, field in enumerate(self.model._meta.concrete_fields):
            declared = re.split(r"[\s(]", field.db_type(database) or "", maxsplit=1)[0].lower()
            if declared in converted:
                columns[index] = f"+{columns[index]}"
        return columns

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
    `build(**samples)` must return the queryset (with `values_list()` or `values()`); every sample must be a
    value no other parameter of the query takes, so that its place among the compiled parameters can be found.
    A sample named in `optional` may be missing from the query (a rule that does not always need it).
    Datetime values are adapted for the database as the ORM adapts them. `fetchall()` converts the values
    as the ORM would and may add a slice (`LIMIT`/`OFFSET`, as the ORM writes it) to the statement.
    """

    def __init__(self, build: Callable[..., QuerySet], optional: tuple[str, ...] = (), **samples):
        self.build = build
        self.samples = samples
        self.optional = frozenset(optional)
        self._compiled: dict[str, tuple[str, tuple[str, ...] | None, list]] = {}
        self._reading: dict[str, tuple[list[str], list]] = {}
        self._converters: dict[tuple[str, int, bool], Callable] = {}

    def compiled(self, alias: str) -> tuple[str, tuple[str, ...] | None, list]:
        """The SQL and its parameters' names as `run()` takes them (`by_name()`), and, per parameter, the sample's
        name it came from (or the fixed value)."""
        if alias not in self._compiled:
            database = connections[alias]
            query = self.build(**self.samples).query
            compiler = query.get_compiler(alias)
            sql, params = compiler.as_sql()
            by_value: dict = {}
            for name, value in self.samples.items():
                by_value.setdefault(self.prepare(database, value), []).append(name)
            places = []
            for param in params:
                try:
                    names = by_value.get(param, ())
                except TypeError:  # an unhashable parameter is no sample
                    names = ()
                places.append(("sample", names[0]) if len(names) == 1 else ("fixed", param))
            missing = set(self.samples) - self.optional - {name for kind, name in places if kind == "sample"}
            if missing:
                raise ValueError(f"The compiled query does not take {', '.join(sorted(missing))} as a parameter.")
            # What results_iter() and ValuesIterable work out on every run: the names and converters of the columns.
            selected = [column[0] for column in compiler.select[:compiler.col_count]]
            names = (list(query.selected) if query.selected else
                     [*query.extra_select, *query.values_select, *query.annotation_select])
            self._reading[alias] = (names, list(compiler.get_converters(selected).items()))
            self._compiled[alias] = (*by_name(database.vendor, sql), places)
        return self._compiled[alias]

    @staticmethod
    def prepare(database, value):
        return database.ops.adapt_datetimefield_value(value) if isinstance(value, datetime) else value

    def execute(self, cursor, alias: str, values: dict, suffix: str = "") -> None:
        database = connections[alias]
        sql, names, places = self.compiled(alias)
        params = [self.prepare(database, values[value]) if kind == "sample" else value for kind, value in places]
        run(cursor, f"{sql} {suffix}" if suffix else sql, names, params)

    def fetchone(self, alias: str, **values) -> tuple | None:
        with statement_cursor(connections[alias]) as cursor:
            self.execute(cursor, alias, values)
            return cursor.fetchone()

    def names(self, alias: str) -> list[str]:
        """The keys of a `.values()` row, in the order of the columns."""
        self.compiled(alias)
        return self._reading[alias][0]

    def fetchall(self, alias: str, *, low: int = 0, high: int | None = None, as_dicts: bool = False,
                 **values) -> list[list] | list[dict]:
        """Every row (from `low` to `high`, as a slice of the queryset would), values converted as the ORM does;
        `as_dicts`: each row as a dict of the `.values()` names, as `dict(zip(names(alias), row))` gives it."""
        database = connections[alias]
        suffix = database.ops.limit_offset_sql(low, high) if low or high is not None else ""
        with statement_cursor(database) as cursor:
            self.execute(cursor, alias, values, suffix)
            rows = cursor.fetchall()
        if not rows:
            return []
        return self.converter(alias, database, len(rows[0]), as_dicts)(rows, database)

    def converter(self, alias: str, database, width: int, as_dicts: bool = False) -> Callable[[list, Any], list]:
        """The function that converts fetched rows of `width` columns as the ORM would, made once per database.

        Written as one list (or dict) display per row, as core.api_lists writes a list's items, it costs a
        fraction of a loop over the columns' converters for every row."""
        key = (alias, width, as_dicts)
        function = self._converters.get(key)
        if function is None:
            parameters, arguments, entries = [], [], []
            converting = dict(self._reading[alias][1])
            names = self._reading[alias][0]
            for index in range(min(width, len(names)) if as_dicts else width):
                value = f"row[{index}]"
                if index in converting:
                    functions, expression = converting[index]
                    parameters.append(f"e{index}")
                    arguments.append(expression)
                    for number, each in enumerate(functions):
                        parameters.append(f"f{index}_{number}")
                        arguments.append(fast_converter(each, database))
                        value = f"f{index}_{number}({value}, e{index}, database)"
                entries.append(f"{names[index]!r}: {value}" if as_dicts else value)
            display = f"{{{', '.join(entries)}}}" if as_dicts else f"[{', '.join(entries)}]"
            source = (f"def convert(rows, database, {', '.join(parameters)}):\n"
                      f"    return [{display} for row in rows]\n")
            namespace: dict = {}
            exec(compile(source, "<CompiledQuery converter>", "exec"), namespace)  # noqa: S102 - column positions only
            function = self._converters.setdefault(key, partial(namespace["convert"], **dict(zip(parameters, arguments))))
        return function


def fast_converter(function: Callable, database) -> Callable:
    """The converter, or one that gives the same values for less: SQLite's datetime converter reads the
    settings for every value (a lazy object's lookup) and parses through two calls; this reads them once.
    A JSONField's (one that keeps its from_db_value) is `json_converter()`."""
    field = getattr(function, "__self__", None)
    if (isinstance(field, JSONField) and field.decoder is None
            and getattr(function, "__func__", None) is JSONField.from_db_value):
        return json_converter(function)
    if database.vendor != "sqlite" or getattr(function, "__name__", "") != "convert_datetimefield_value":
        return function
    zone = database.timezone if settings.USE_TZ else None
    fromisoformat = datetime.fromisoformat

    def convert(value, expression, connection):
        if value is None:
            return None
        if type(value) is str:
            try:
                value = fromisoformat(value)  # what parse_datetime() tries first
            except ValueError:
                value = parse_datetime(value)
        elif not isinstance(value, datetime):
            value = parse_datetime(value)
        if zone is not None and value.utcoffset() is None:
            value = value.replace(tzinfo=zone)  # make_aware()
        return value

    return convert


def json_converter(from_db_value: Callable) -> Callable:
    """JSONField's converter (`json.loads`), parsed by orjson when that gives the very same value.

    orjson reads a subset of what Python's json module reads (no NaN, no lone surrogates: those raise, and the
    field's own converter answers), and reads it alike, except numbers: an integer past 64 bits becomes a
    float. So a value holding a float is parsed again by the field's converter; text, integers, booleans,
    None, lists and dicts are taken as orjson gives them, at a fraction of the cost.
    """
    loads = orjson.loads

    def convert(value, expression, connection):
        if type(value) is not str or isinstance(expression, KeyTransform):
            return from_db_value(value, expression, connection)
        try:
            parsed = loads(value)
        except orjson.JSONDecodeError:
            return from_db_value(value, expression, connection)
        return parsed if exact(parsed) else from_db_value(value, expression, connection)

    return convert


def exact(value) -> bool:
    """Whether a parsed JSON value holds no float (where orjson and the json module may differ)."""
    kind = type(value)
    if kind is list:
        items = value
    elif kind is dict:
        items = value.values()
    else:
        return kind is not float
    for item in items:
        kind = type(item)
        if kind is not str and kind is not int and kind is not bool and item is not None and not exact(item):
            return False
    return True


TOTAL = "rows_total"  # the alias a page's statement reads the number of rows in all under
STAMP = "rows_stamp_"  # the prefix of the aliases a page's statement reads its tables' write stamps under
SAMPLE_USER_ID = -7_350_000_000  # a sample parameter: an id no user has


@dataclass(frozen=True)
class PageStatements:
    """A list's page statements for one kind of user, set of filters and shape: `counted` reads the page's rows
    with their total, `stamped` the rows alone; both read the write stamps (core.stamps) of every table they
    read, under the aliases `read_stamps`, of which `stamps` are those of the tables the total counts.
    `current` reads those stamps alone, in the order of `read_stamps`."""

    counted: CompiledQuery
    stamped: CompiledQuery
    stamps: tuple[str, ...]
    read_stamps: tuple[str, ...]
    current: CompiledQuery


@dataclass(frozen=True)
class RememberedPage:
    """What a caller made of a page's rows, their total, and the write stamps of every table they were read from."""

    made: Any
    total: int
    stamps: tuple


class Pages:
    """A list's pages, each read by one statement compiled once: the page's rows and the number of rows in all.

    `rows(user, **filters)` gives the list's queryset (filtered and ordered) as `user` sees it; `values(queryset)`
    the `.values()` queryset that reads it. A statement is compiled for each kind of user (superuser, active),
    set of filters named and `shape` (such as an ordering, which `rows` reads from `shape=`): the rule may depend
    on the user only through those and the user's id, and on a filter only through its value as a parameter.
    Building and compiling the queryset again on every request was most of a short list's time.

    The total is remembered for each user and set of filter values with the write stamps it was read with, and
    the next page of that list reads only the stamps with its rows: while they are the same, the total is too
    (core/stamps.py), and counting thousands of rows again was most of a short page's time on PostgreSQL. Inside a
    transaction a list counts every time: what it reads there may still be rolled back.

    `make(rows)` gives what the caller makes of a page (a list's items), and `give(made)` what a request is given
    of it, in place of the rows. With `remember` (what is made depends on nothing but the rows the statement reads,
    the rows of `also_reads()`, the tables `make` reads by statements of its own, and `page()`'s `made_as`), it is
    remembered with the write stamps of every one of those tables, read with the page; the same page asked for
    again reads only those stamps, and while they are the same no row it was made from was written, so what was
    made is given again (`give` works out again what depends on the time of the request).
    """

    MOST = 64  # statements kept: a request asks for its shape, so the kinds must not grow without end
    MOST_TOTALS = 4096  # totals remembered, the least recently read forgotten first
    MOST_PAGES = 64  # pages remembered (`made`), the least recently read forgotten first

    def __init__(self, rows: Callable[..., QuerySet], values: Callable[[QuerySet], QuerySet], *,
                 make: Callable[[list[dict]], Any] | None = None, give: Callable[[Any], Any] | None = None,
                 remember: bool = False, also_reads: Callable[[], set[str]] = set):
        self.rows = rows
        self.values = values
        self.make = make
        self.also_reads = also_reads
        self.give = give or (lambda made: made)
        self.remember_made = remember and make is not None
        self._statements: dict[tuple, PageStatements | None] = {}
        self._totals: OrderedDict[tuple, tuple[tuple, int]] = OrderedDict()
        self._pages: OrderedDict[tuple, RememberedPage] = OrderedDict()
        self._lock = Lock()

    def page(self, user, number: int, size: int, *, alias: str, shape: tuple = (), made_as: tuple = (),
             **filters) -> tuple[Any, int] | None:
        """The rows of page `number` (from 1) of `size` rows (or what `make` makes of them), and the number of rows
        in all; None past the last page (the caller's paginator answers that as it always has) or for a list that
        cannot be compiled. `made_as`: what else than the rows `make` depends on (such as the time zone)."""
        key = self.key(user, shape, tuple(sorted(filters)))
        statements = self.statements(key, user)
        if statements is None:
            return None
        slice_of_page = {"low": (number - 1) * size, "high": number * size, "as_dicts": True, "user_id": user.pk}
        remembering = not connections[alias].in_atomic_block
        list_key = (key, user.pk, tuple(sorted(filters.items())))
        page_key = (list_key, number, size, made_as)
        if self.remember_made and remembering:
            remembered = self._pages.get(page_key)
            if remembered is not None and self.current_stamps(statements, alias) == remembered.stamps:
                self.remember(self._pages, self.MOST_PAGES, page_key, remembered)
                return self.give(remembered.made), remembered.total
        known = self._totals.get(list_key) if remembering else None
        found = None
        if known is not None:
            found = statements.stamped.fetchall(alias, **slice_of_page, **filters)
            if found and tuple(found[0][name] for name in statements.stamps) == known[0]:
                self.remember(self._totals, self.MOST_TOTALS, list_key, known)
                total = known[1]
            elif found:
                found = None  # written since: counted again
        if found is None:
            found = statements.counted.fetchall(alias, **slice_of_page, **filters)
            if found:
                total = found[0][TOTAL]
                stamps = tuple(found[0][name] for name in statements.stamps)
                if remembering and None not in stamps:
                    self.remember(self._totals, self.MOST_TOTALS, list_key, (stamps, total))
        if not found:
            return None if number > 1 else (found if self.make is None else self.give(self.make(found)), 0)
        if self.make is None:
            return found, total
        read_stamps = tuple(found[0][name] for name in statements.read_stamps)
        made = self.make(found)
        if self.remember_made and remembering and None not in read_stamps:
            self.remember(self._pages, self.MOST_PAGES, page_key, RememberedPage(made, total, read_stamps))
        return self.give(made), total

    @staticmethod
    def current_stamps(statements: PageStatements, alias: str) -> tuple:
        """The write stamps of the tables a page reads, as they are now (a table without one is left out)."""
        return tuple(stamp for stamp, in statements.current.fetchall(alias))

    def remember(self, memory: OrderedDict, most: int, key: tuple, value) -> None:
        with self._lock:
            memory[key] = value
            memory.move_to_end(key)
            if len(memory) > most:
                memory.popitem(last=False)

    @staticmethod
    def key(user, shape: tuple, filters: tuple[str, ...]) -> tuple:
        return bool(getattr(user, "is_superuser", False)), bool(getattr(user, "is_active", False)), shape, filters

    def statements(self, key: tuple, user) -> PageStatements | None:
        if key in self._statements:
            return self._statements[key]
        if len(self._statements) >= self.MOST:
            return None  # an ordering of many fields, say: the ORM builds it, and memory stays bounded
        superuser, active, shape, filters = key
        user_model = user.__class__  # the model's, also through the lazy object of a session's user

        def listed(user_id: int, **values) -> tuple[QuerySet, QuerySet]:
            """The page's rows as `values()` reads them, and their total."""
            rows = self.rows(user_model(pk=user_id, is_superuser=superuser, is_active=active), shape=shape, **values)
            # COUNT(*), not COUNT of the key (the same number, a key is never null): SQLite counts a table's rows
            # from its smallest index without reading them, where counting a column reads every row.
            total = rows.order_by().values(**{TOTAL: Func(Star(), function="COUNT", output_field=IntegerField())})
            return self.values(rows), total

        samples = {name: f"sample-{name}-7350" for name in filters}
        read, total = listed(SAMPLE_USER_ID, **samples)
        counted_tables = tables_read(total)
        tables = sorted(tables_read(read) | counted_tables | self.also_reads())  # as the statements are compiled

        def build(user_id: int, *, counted: bool, **values) -> QuerySet:
            read, total = listed(user_id, **values)
            read = read.annotate(**write_stamps(tables))
            return read.annotate(**{TOTAL: Subquery(total, output_field=IntegerField())}) if counted else read

        statements = None
        # A distinct or sliced list cannot be counted by its rows' ids, nor sliced again.
        if not (read.query.distinct or read.query.is_sliced):
            statements = PageStatements(
                counted=CompiledQuery(partial(build, counted=True), optional=("user_id",), user_id=SAMPLE_USER_ID,
                                      **samples),
                stamped=CompiledQuery(partial(build, counted=False), optional=("user_id",), user_id=SAMPLE_USER_ID,
                                      **samples),
                stamps=tuple(STAMP + table for table in sorted(counted_tables)),
                read_stamps=tuple(STAMP + table for table in tables),
                current=CompiledQuery(lambda: WriteStamp.objects.filter(table_name__in=tables)
                                      .order_by("table_name").values_list("stamp")),
            )
        with self._lock:
            return self._statements.setdefault(key, statements)


def tables_read(queryset: QuerySet) -> set[str]:
    """The tables of the project's models that the queryset's statement reads (its subqueries' too)."""
    sql, _ = queryset.query.get_compiler(queryset.db).as_sql()
    quote = connections[queryset.db].ops.quote_name
    return {model._meta.db_table for model in apps.get_models(include_auto_created=True)
            if quote(model._meta.db_table) in sql}


def write_stamps(tables: Iterable[str]) -> dict[str, Subquery]:
    """The write stamp of each table, as subqueries aliased STAMP + the table's name. A table that has no stamp
    (core/stamps.py) reads NULL, and what was read with it is not remembered."""
    return {f"{STAMP}{table}": Subquery(WriteStamp.objects.filter(table_name=table).values("stamp"))
            for table in sorted(tables)}


class ForIds:
    """A query over a list of ids (`build(ids, **samples)` gives the queryset filtered by them), compiled once per
    number of ids rounded up to a power of two (the last id repeated), so that a few statements serve every page.
    `samples` are the query's other parameters, as CompiledQuery takes them."""

    SAMPLE = -7_340_000_000  # sample parameters: ids no row has

    def __init__(self, build: Callable[..., QuerySet], **samples):
        self.build = build
        self.samples = samples
        self._statements: dict[int, CompiledQuery] = {}
        self._lock = Lock()

    def fetchall(self, alias: str, ids: Sequence[int], as_dicts: bool = False, **values) -> tuple[list[str], list]:
        """The `.values()` names (for a `.values()` queryset) and the rows, converted as the ORM converts them
        (`as_dicts`: each a dict of those names)."""
        if not ids:
            return [], []
        size = 1 << (len(ids) - 1).bit_length()
        statement = self._statements.get(size)
        if statement is None:
            def build(**samples) -> QuerySet:
                return self.build([samples[f"id{number}"] for number in range(size)],
                                  **{name: samples[name] for name in self.samples})

            statement = CompiledQuery(build, **self.samples,
                                      **{f"id{number}": self.SAMPLE - number for number in range(size)})
            with self._lock:
                statement = self._statements.setdefault(size, statement)
        padded = [*ids, *[ids[-1]] * (size - len(ids))]
        names = ID_NAMES[:size] if size <= len(ID_NAMES) else [f"id{number}" for number in range(size)]
        rows = statement.fetchall(alias, as_dicts=as_dicts, **values, **dict(zip(names, padded)))
        return statement.names(alias), rows


ID_NAMES = tuple(f"id{number}" for number in range(4096))  # ForIds' parameters, named once
