"""List reads from `.values()` rows, represented by the serializer's own fields: the same JSON, a fraction of the CPU.

Through a ModelSerializer, a page of 500 connections builds 500 model instances and their endpoints' (a
queryset cloned per row for the prefetch), then asks every field for its attribute through descriptors;
that, not the database, was most of the list's time (docs/benchmarks.md). Here the serializer's fields say
which columns to read and represent each value with their own `to_representation`, so a field added to the
serializer is read and shown alike without touching this; a field this cannot read by itself (a method
field, a `source="*"` field) must be given as `computed`, or the first list fails loudly. Related lists (a
`many=True` slug field, a nested `many=True` serializer) are read in one query a page each, from the queryset
the view's prefetch names for that relation (its order, its `distinct()`), as the prefetch would read them.
Tests compare the output with the serializer's on the same rows.

A list request that names no filter (the common one) is read by statements compiled once per database,
ordering and kind of user (`CompiledQuery`): the page and its total in one statement, each related list in
one more (on PostgreSQL, a page of up to BY_KEY_MOST rows reads them in its own: `folded_list()`). Building and
compiling those querysets was most of a short list's time. A filtered request goes through the ORM as before.
"""

import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from datetime import timezone as dt_timezone
from dataclasses import field as dataclass_field
from functools import partial
from threading import Lock
from typing import Any

from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
from django.core.paginator import Page
from django.db import connections
from django.db.models import (
    F, ForeignObjectRel, JSONField, ManyToManyField, Model, OuterRef, Prefetch, QuerySet, Subquery,
)
from django.db.models.functions import JSONObject
from django.utils import timezone, translation
from rest_framework import ISO_8601, serializers
from rest_framework.filters import OrderingFilter
from rest_framework.settings import api_settings
from rest_framework.response import Response
from rest_framework.relations import ManyRelatedField, RelatedField, SlugRelatedField

from .api import FilterBackend
from .rows import ForIds, Pages, tables_read


@dataclass(frozen=True)
class Computed:
    """A field represented from several columns of the row: `.values()` lookups, and expressions by alias.

    `by_field`: `represent` gives the value the model's attribute would (a property computed from columns),
    which the serializer's field then represents as it represents the attribute (None as None).
    `per_list`: `represent` is called once for each list and gives the function of a row (what is the same
    for every row, such as the time now, is worked out once).
    `plain`: `represent` gives only text, integers, booleans, None, and lists and dicts of those (JSON that
    every writer writes alike: see `ValuesList.plain`); otherwise each value is checked.
    """

    columns: tuple[str, ...]
    represent: Callable[..., Any]
    expressions: dict = dataclass_field(default_factory=dict)
    by_field: bool = False
    per_list: bool = False
    plain: bool = False


@dataclass(frozen=True)
class _Derived:
    """A `by_field` computed value, represented by the serializer's field."""

    name: str
    value: Callable[..., Any]
    representation: Callable[[], Callable[[Any], Any]]
    per_list: bool = False
    plain: bool = False


@dataclass(frozen=True)
class _Column:
    name: str
    lookup: str
    representation: Callable[[], Callable[[Any], Any]] | None  # for each list, the value's representation; None: as read
    plain: bool = False  # its values are always plain JSON (text, an integer, a boolean or None)


@dataclass(frozen=True)
class _Related:
    """The rows of a to-many relation for a page, in one query: the slugs of a `many=True` slug field (`slug`),
    or a nested serializer's items (`nested`, a ValuesList of its own)."""

    name: str
    accessor: str  # the relation's name on the listed model, as a prefetch names it
    model: type[Model]
    back: str  # the lookup from the related model back to the listed one
    slug: str | None = None
    nested: "ValuesList | None" = None
    plain: bool = False  # the slugs are always plain JSON
    # A many-to-many relation's through model, and its foreign keys' columns to the listed and the related row.
    through: tuple[type[Model], str, str] | None = None


PARENT = "values_list_parent"  # the alias the related rows' parent id is read under


class ValuesList:
    """How to read and represent a serializer's list from `.values()` rows; built once, on first use."""

    def __init__(self, serializer_class: type[serializers.ModelSerializer], computed: dict[str, Computed] | None = None,
                 nested: dict[str, "ValuesList"] | None = None):
        """`computed`: fields read from several columns (a computed field may also read a related list, which the
        row holds by its field's name, as represented); `nested`: how to read a nested serializer that needs
        `computed` of its own (otherwise one is built from the nested serializer)."""
        self.serializer_class = serializer_class
        self.computed = computed or {}
        self.nested = nested or {}
        self._plan: tuple[list, list[str], dict] | None = None
        self._items: Callable[..., list[dict]] | None = None
        self._always_plain: bool | None = None
        self._json_columns: dict[str, str] | bool | None = None

    def plan(self) -> tuple[list, list[str], dict]:
        """Each readable field in the serializer's order (a column, a computed value or a related list), and the
        `.values()` lookups and expressions they need."""
        if self._plan is None:
            model = self.serializer_class.Meta.model
            steps, lookups, expressions = [], [model._meta.pk.attname], {}
            for name, field in self.serializer_class().fields.items():
                if field.write_only:
                    continue
                if name in self.computed:
                    computed = self.computed[name]
                    steps.append((name, _Derived(name, computed.represent, representation(field), computed.per_list,
                                                 plain_field(field)) if computed.by_field else computed))
                    lookups += self.computed[name].columns
                    expressions.update(self.computed[name].expressions)
                elif isinstance(field, ManyRelatedField):
                    steps.append((name, related(model, name, field.source, slug=slug_of(name, field.child_relation))))
                elif isinstance(field, serializers.ListSerializer) and isinstance(field.child,
                                                                                  serializers.ModelSerializer):
                    nested = self.nested.get(name) or ValuesList(type(field.child))
                    steps.append((name, related(model, name, field.source, nested=nested)))
                elif isinstance(field, RelatedField):
                    lookup = lookup_of(model, name, field.source_attrs) + "__" + slug_of(name, field)
                    step = _Column(name, lookup, None, plain_column(model, lookup))
                    steps.append((name, step))
                    lookups.append(step.lookup)
                elif field.source == "*" or isinstance(field, serializers.SerializerMethodField):
                    raise ImproperlyConfigured(f"{self.serializer_class.__name__}.{name}: give it as `computed`.")
                else:
                    step = _Column(name, lookup_of(model, name, field.source_attrs), representation(field),
                                   plain_field(field))
                    steps.append((name, step))
                    lookups.append(step.lookup)
            self._plan = (steps, list(dict.fromkeys(lookups)), expressions)
            self._items = items_function(steps)
        return self._plan

    def values(self, queryset: QuerySet, *, by_key: bool = False, fold: bool = False) -> QuerySet:
        """The queryset (filtered and ordered as the view wants) reading just the columns the fields need.

        `by_key`: a column of a row's foreign key is read by that key in a subquery, not by a join (the same
        value): for a few rows, where PostgreSQL would hash the whole related table to join it.
        `fold`: on PostgreSQL, each related list that can be is read with its row, as a column of the same
        statement (`folded_list()`), which saves the list a statement and a round trip of its own."""
        steps, lookups, expressions = self.plan()
        if by_key:
            lookups, keyed = keyed_columns(queryset.model, lookups)
            expressions = {**keyed, **expressions}
        if fold and connections[queryset.db].vendor == "postgresql":
            prefetches = queryset._prefetch_related_lookups
            folded = {FOLDED + step.name: folded_list(step, prefetches) for _, step in steps if type(step) is _Related}
            expressions = {**expressions, **{alias: list_of_rows for alias, list_of_rows in folded.items()
                                             if list_of_rows is not None}}
        return queryset.prefetch_related(None).values(*lookups, **expressions)

    def represent(self, rows: Sequence[dict], prefetches: Sequence = (), alias: str | None = None) -> list[dict]:
        """The serializer's output for these rows: keys in its order, None as it gives None.

        `prefetches`: the view's `prefetch_related()` lookups, which say how each related list is read;
        `alias`: read them with statements compiled once for that database (else through the ORM).
        """
        steps, lookups, _ = self.plan()
        pk = lookups[0]
        ids = [row[pk] for row in rows]
        for _, step in steps:
            if type(step) is _Related:
                if rows and FOLDED + step.name in rows[0]:
                    unfold(step, rows, prefetches, alias)
                    continue
                lists = (prepared_related_lists(step, ids, prefetches, alias) if alias is not None else
                         related_lists(step, ids, prefetches))
                for row in rows:
                    row[step.name] = lists.get(row[pk], [])
        functions = []
        for _, step in steps:
            if type(step) is _Column and step.representation is not None:
                functions.append(step.representation())
            elif type(step) is _Derived:
                functions += [step.value() if step.per_list else step.value, step.representation()]
            elif type(step) is Computed:
                functions.append(step.represent() if step.per_list else step.represent)
        return self._items(rows, *functions)

    def plain(self, items: Sequence[dict]) -> bool:
        """Whether these items (from `represent()`) hold only text, integers, booleans, None, lists and dicts:
        JSON that orjson writes byte for byte as Python's json module does (floats are where they differ)."""
        steps, _, _ = self.plan()
        if self.always_plain():
            return True
        for name, step in steps:
            if type(step) is _Related and step.nested is not None:
                if not all(step.nested.plain(item[name]) for item in items):
                    return False
            elif not step.plain and not all(is_plain(item[name]) for item in items):
                return False
        return True

    def made_from_rows(self, prefetches: Sequence = (), nested: bool = False) -> bool:
        """Whether a page's items depend on nothing but the rows read for it (its own and its related lists'; the
        time zone and language), but for values worked out per list (such as an age against the time now), which
        `again()` works out again: no related list has values worked out per list."""
        steps, _, _ = self.plan()
        for _, step in steps:
            if type(step) is _Related:
                if step.nested is not None and not step.nested.made_from_rows(related_queryset(step, prefetches)[1],
                                                                               nested=True):
                    return False
            elif nested and type(step) in (Computed, _Derived) and step.per_list:
                return False
        return True

    def related_tables(self, prefetches: Sequence = ()) -> set[str]:
        """The tables the statements reading a page's related lists read (theirs' too), as `represent()` reads them
        when they are not read with the page's rows."""
        steps, _, _ = self.plan()
        tables = set()
        for _, step in steps:
            if type(step) is _Related:
                queryset, inner = related_queryset(step, prefetches)
                if step.nested is None:
                    tables |= tables_read(slug_rows(step, queryset, [ForIds.SAMPLE]))
                else:
                    tables |= tables_read(nested_rows(step, queryset, [ForIds.SAMPLE]))
                    tables |= step.nested.related_tables(inner)
        return tables

    def per_list_steps(self) -> list[tuple[str, Any]]:
        steps, _, _ = self.plan()
        return [(name, step) for name, step in steps if type(step) in (Computed, _Derived) and step.per_list]

    def to_remember(self, rows: Sequence[dict], prefetches: Sequence = (), alias: str | None = None) -> tuple:
        """The items of `rows` (`represent()`), with each row's columns that values worked out per list read:
        what a remembered page keeps, for `again()`."""
        columns = [column for name, _ in self.per_list_steps()
                   for column in (*self.computed[name].columns, *self.computed[name].expressions)]
        read = [{column: row[column] for column in columns} for row in rows] if columns else None
        return self.represent(rows, prefetches, alias), read

    def again(self, remembered: tuple) -> list[dict]:
        """A remembered page's items, with the values worked out per list worked out now, in their places."""
        items, read = remembered
        if read is None:
            return items
        functions = [(name, step.value(), step.representation()) if type(step) is _Derived else
                     (name, step.represent(), None) for name, step in self.per_list_steps()]
        fresh_items = []
        for item, columns in zip(items, read):
            row, fresh = dict(columns), item.copy()
            for name, value_of, represented in functions:
                value = value_of(row)
                fresh[name] = value if represented is None or value is None else represented(value)
            fresh_items.append(fresh)
        return fresh_items

    def always_plain(self) -> bool:
        """Whether every item is plain JSON whatever the rows: each step says its values always are (a nested
        list's own steps too), so that a list need not look at its items."""
        if self._always_plain is None:
            steps, _, _ = self.plan()
            self._always_plain = all(step.nested.always_plain() if type(step) is _Related and step.nested is not None
                                     else step.plain for _, step in steps)
        return self._always_plain

    def json_columns(self) -> dict[str, str] | None:
        """The `.values()` lookups this reads, each with its column's kind (Django's internal type), when every
        one reads back from JSON as the ORM reads it (text, integers, booleans; times, from their ISO text);
        None otherwise, or when this reads computed expressions or related lists of its own."""
        if self._json_columns is None:
            steps, lookups, expressions = self.plan()
            model = self.serializer_class.Meta.model
            kinds = {lookup: column_kind(model, lookup) for lookup in lookups}
            self._json_columns = (False if expressions or any(type(step) is _Related for _, step in steps)
                                  or not set(kinds.values()) <= JSON_COLUMNS else kinds)
        return self._json_columns or None


def is_plain(value) -> bool:
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return True
    if kind is list:
        return all(is_plain(item) for item in value)
    if kind is dict:
        return all(type(key) is str and is_plain(item) for key, item in value.items())
    return False


def items_function(steps: list) -> Callable[..., list[dict]]:
    """The function that makes the items of a list from its rows: `items(rows, *functions)`, given for each
    list the functions of its steps (a column's representation; a derived value's function and representation;
    a computed value's function).

    Written as one dict display per row, it costs a fraction of a loop over the steps with a test of each
    step's kind for every value; the code is generated from the steps as dataclasses' and namedtuple's are.
    """
    parameters, entries = [], []
    for position, (name, step) in enumerate(steps):
        key = repr(name)
        if type(step) is _Column and step.representation is None:
            entries.append(f"{key}: row[{step.lookup!r}]")
        elif type(step) is _Column:
            parameters.append(f"f{position}")
            entries.append(f"{key}: None if (value := row[{step.lookup!r}]) is None else f{position}(value)")
        elif type(step) is _Related:
            entries.append(f"{key}: row[{key}]")
        elif type(step) is _Derived:
            parameters += [f"g{position}", f"f{position}"]
            entries.append(f"{key}: None if (value := g{position}(row)) is None else f{position}(value)")
        else:
            parameters.append(f"g{position}")
            entries.append(f"{key}: g{position}(row)")
    source = (f"def items(rows, {', '.join(parameters)}):\n"
              f"    return [{{{', '.join(entries)}}} for row in rows]\n")
    namespace: dict = {}
    exec(compile(source, "<ValuesList items>", "exec"), namespace)  # noqa: S102 - the source is the steps' names
    return namespace["items"]


PLAIN_FIELDS = (serializers.CharField, serializers.IntegerField, serializers.BooleanField, serializers.ChoiceField,
                serializers.DateTimeField)
PLAIN_COLUMNS = {"CharField", "TextField", "SlugField", "EmailField", "IntegerField", "BigIntegerField",
                 "SmallIntegerField", "PositiveIntegerField", "PositiveBigIntegerField", "PositiveSmallIntegerField",
                 "AutoField", "BigAutoField", "SmallAutoField", "BooleanField"}


def plain_field(field: serializers.Field) -> bool:
    """Whether the field always represents a value as plain JSON (text, an integer, a boolean or None)."""
    if type(field) not in PLAIN_FIELDS:
        return False
    if type(field) is serializers.ChoiceField:
        return all(type(value) in (str, int, bool) for value in field.choice_strings_to_values.values())
    # A DateTimeField without a format gives the datetime itself.
    return type(field) is not serializers.DateTimeField or getattr(field, "format", api_settings.DATETIME_FORMAT) is not None


def plain_column(model: type[Model], lookup: str) -> bool:
    """Whether a `.values()` lookup reads text, an integer or a boolean (or None)."""
    return column_kind(model, lookup) in PLAIN_COLUMNS


def column_kind(model: type[Model], lookup: str) -> str:
    """The internal type (Django's name for a column's kind) of the column a `.values()` lookup reads."""
    current, *path = lookup.split("__")
    field = model._meta.get_field(current)
    for part in path:
        field = field.related_model._meta.get_field(part)
    return field.get_internal_type()


def representation(field: serializers.Field) -> Callable[[], Callable[[Any], Any]]:
    """For each list, the function that represents one value exactly as `field.to_representation` does.

    DRF's DateTimeField asks for the current time zone again for every value (a context-local read, most of
    its cost); a list asks once, then does what the field does with an aware datetime.
    """
    if type(field) is serializers.DateTimeField and not hasattr(field, "timezone") and (
            str(getattr(field, "format", api_settings.DATETIME_FORMAT)).lower() == ISO_8601):
        def per_list() -> Callable[[Any], Any]:
            zone = field.default_timezone()
            if zone is None:
                return field.to_representation

            # Shown in UTC, a time read in UTC is its own digits and "Z" (what astimezone() and the field's
            # "+00:00" → "Z" give), with less work: the common case, a server on UTC reading UTC columns.
            in_utc = zone is dt_timezone.utc or getattr(zone, "key", None) == "UTC"

            def represent(value):
                if type(value) is not datetime:
                    return field.to_representation(value)
                if in_utc and (value.tzinfo is dt_timezone.utc or value.tzinfo is zone):
                    return value.replace(tzinfo=None).isoformat() + "Z"
                if value.utcoffset() is None:
                    return field.to_representation(value)
                text = value.astimezone(zone).isoformat()
                return text[:-6] + "Z" if text.endswith("+00:00") else text

            return represent

        return per_list
    kind = type(field)
    if kind is serializers.CharField:
        return lambda: str  # what CharField.to_representation does
    if kind is serializers.IntegerField:
        return lambda: int
    if kind is serializers.BooleanField:
        def boolean() -> Callable[[Any], Any]:
            to_representation = field.to_representation
            return lambda value: value if value is True or value is False else to_representation(value)

        return boolean
    if kind is serializers.ChoiceField:
        def choice() -> Callable[[Any], Any]:
            to_representation, values = field.to_representation, field.choice_strings_to_values
            return lambda value: values.get(value, value) if type(value) is str and value else to_representation(value)

        return choice
    return lambda: field.to_representation


def slug_of(name: str, field: RelatedField) -> str:
    """The related object is shown by one of its columns, exactly as SlugRelatedField shows it."""
    if not isinstance(field, SlugRelatedField) or type(field).to_representation is not SlugRelatedField.to_representation:
        raise ImproperlyConfigured(f"{name}: only SlugRelatedField relations are read from values; give it as `computed`.")
    return field.slug_field


def lookup_of(model: type[Model], name: str, source_attrs: Iterable[str]) -> str:
    """`a.b.c` as the `.values()` lookup `a__b__c`, through foreign keys that are never null.

    Through a nullable one the serializer would answer by its own rules (default, SkipField), which a lookup
    reading None does not follow.
    """
    attrs = list(source_attrs)
    current = model
    for attr in attrs[:-1]:
        field = current._meta.get_field(attr)
        if not field.many_to_one or field.null:
            raise ImproperlyConfigured(f"{name}: {attr} is not a foreign key that is never null; give it as `computed`.")
        current = field.related_model
    current._meta.get_field(attrs[-1])  # a model field, or FieldDoesNotExist now rather than a wrong row later
    return "__".join(attrs)


def related(model: type[Model], name: str, source: str, *, slug: str | None = None,
            nested: "ValuesList | None" = None) -> _Related:
    """A to-many relation of `model` by its accessor: a reverse foreign key, or a many-to-many either way."""
    relation = model._meta.get_field(source)
    if isinstance(relation, ForeignObjectRel) and (relation.one_to_many or relation.many_to_many):
        back = relation.field.name
    elif isinstance(relation, ManyToManyField):
        back = relation.related_query_name()
    else:
        raise ImproperlyConfigured(f"{name}: only to-many relations are read as lists; give it as `computed`.")
    plain = slug is not None and plain_column(relation.related_model, slug)
    return _Related(name, source, relation.related_model, back, slug, nested, plain, through_columns(relation))


def through_columns(relation) -> tuple[type[Model], str, str] | None:
    """A many-to-many relation's through model and its columns to the listed and the related row, else None."""
    if not relation.many_to_many:
        return None
    field = relation.field if isinstance(relation, ForeignObjectRel) else relation
    to_listed, to_related = field.m2m_field_name(), field.m2m_reverse_field_name()
    if isinstance(relation, ForeignObjectRel):  # the listed model is the field's target
        to_listed, to_related = to_related, to_listed
    through = field.remote_field.through._meta
    return through.model, through.get_field(to_listed).attname, through.get_field(to_related).attname


# Up to this many listed rows, a related list reads its related rows' columns by key (`through_slugs()`,
# `keyed_columns()`); for more, a join, which PostgreSQL answers by hashing the related table: cheaper for a page
# of 500, dearer for a page of 50 (docs/benchmarks.md). A page's ids are compiled in powers of two: 50 ids read
# as 64.
BY_KEY_MOST = 64


def keyed_columns(model: type[Model], lookups: list[str]) -> tuple[list[str], dict[str, Subquery]]:
    """`lookups` less those reading a column of a row's foreign key (`connection__name`), and those as subqueries
    by the key under the same names: the value the join gives, a foreign key's target row being its key's."""
    plain, keyed = [], {}
    for lookup in lookups:
        head, _, column = lookup.partition("__")
        try:
            field = model._meta.get_field(head) if column and "__" not in column else None
            read = field.related_model._meta.get_field(column) if field is not None and field.many_to_one else None
        except FieldDoesNotExist:  # an expression's alias, `pk`: as the ORM reads it
            read = None
        if read is None or read.is_relation:
            plain.append(lookup)
            continue
        target = field.related_model._base_manager.filter(**{field.target_field.attname: OuterRef(field.attname)})
        keyed[lookup] = Subquery(target.order_by().values(column))
    return plain, keyed


RELATED_SLUG = "values_list_slug"  # the alias a slug read through a many-to-many relation's through table has


def through_slugs(step: _Related, queryset: QuerySet, ids: list) -> QuerySet | None:
    """The (listed id, related id, slug) rows of a many-to-many slug list, read from the through table with each
    related row's slug by its key in a subquery: the rows a join of `queryset` gives, which PostgreSQL answers
    by hashing the whole related table (milliseconds at 10,000 endpoints, for a page of 50 connections).

    None (the join reads it) unless `through_rows()` can read them and there are at most BY_KEY_MOST ids (for
    more, hashing the related table is the cheaper plan).
    """
    rows = through_rows(step, queryset)
    if rows is None or len(ids) > BY_KEY_MOST:
        return None
    _, to_listed, to_related = step.through
    return rows.filter(**{f"{to_listed}__in": ids}).values_list(to_listed, to_related, RELATED_SLUG)


def through_rows(step: _Related, queryset: QuerySet) -> QuerySet | None:
    """A many-to-many slug list's through rows, each with its related row's slug by key (RELATED_SLUG), ordered
    and distinct as `queryset` is; None unless `queryset` is the related model's every row, ordered by nothing but
    the slug."""
    query = queryset.query
    if step.through is None or step.nested is not None or query.where or query.annotations or query.extra \
            or query.distinct_fields or query.extra_tables:
        return None
    ordering = query.order_by or (step.model._meta.ordering if query.default_ordering else ())
    if not all(isinstance(each, str) and each.lstrip("-") == step.slug for each in ordering):
        return None
    through, _, to_related = step.through
    slug = step.model._base_manager.filter(pk=OuterRef(to_related)).order_by().values(step.slug)
    rows = (through._base_manager.annotate(**{RELATED_SLUG: Subquery(slug)})
            .order_by(*(each.replace(step.slug, RELATED_SLUG) for each in ordering)))
    return rows.distinct() if query.distinct else rows


def slug_rows(step: _Related, queryset: QuerySet, ids: list) -> QuerySet:
    """(listed id, related id, slug) of a slug list's rows for `ids`: through the through table when it can be,
    else by the join of `queryset`."""
    rows = through_slugs(step, queryset, ids)
    if rows is None:
        rows = queryset.filter(**{f"{step.back}__in": ids}).values_list(F(step.back), step.model._meta.pk.attname,
                                                                         step.slug)
    return rows


def nested_rows(step: _Related, queryset: QuerySet, ids: list) -> QuerySet:
    """A nested list's `.values()` rows for `ids`, each with its parent's id (PARENT); a short page reads the
    rows' foreign-key columns by key (BY_KEY_MOST)."""
    filtered = queryset.filter(**{f"{step.back}__in": ids})
    return step.nested.values(filtered, by_key=len(ids) <= BY_KEY_MOST).annotate(**{PARENT: F(step.back)})


def related_prefetch(step: _Related, prefetches: Sequence) -> Prefetch | None:
    """The view's prefetch of the relation that gives its queryset, if any."""
    for lookup in prefetches:
        if isinstance(lookup, Prefetch) and lookup.prefetch_to == step.accessor and lookup.queryset is not None:
            return lookup
    return None


def related_queryset(step: _Related, prefetches: Sequence) -> tuple[QuerySet, Sequence]:
    """The related model's rows as the view's prefetch of the relation reads them (the related model's default
    queryset when the prefetch gives none), and the prefetches of that queryset."""
    lookup = related_prefetch(step, prefetches)
    if lookup is None:
        return step.model._default_manager.all(), ()
    return lookup.queryset, lookup.queryset._prefetch_related_lookups


def related_lists(step: _Related, ids: list, prefetches: Sequence) -> dict[Any, list]:
    """Parent id → its related slugs or nested items, read as the view's prefetch of the relation reads them."""
    if not ids:
        return {}
    queryset, inner = related_queryset(step, prefetches)
    lists: dict[Any, list] = {}
    if step.nested is None:
        for parent, _, slug in slug_rows(step, queryset, ids):
            lists.setdefault(parent, []).append(slug)
        return lists
    rows = list(nested_rows(step, queryset, ids))
    for row, item in zip(rows, step.nested.represent(rows, inner)):
        lists.setdefault(row[PARENT], []).append(item)
    return lists


_RELATED: dict[tuple, ForIds] = {}
_RELATED_LOCK = Lock()


def prepared_related_lists(step: _Related, ids: list, prefetches: Sequence, alias: str) -> dict[Any, list]:
    """As `related_lists()`, by statements compiled once per database and number of ids (core.rows.ForIds)."""
    if not ids:
        return {}
    if not all(type(value) is int for value in ids):
        return related_lists(step, ids, prefetches)
    lookup = related_prefetch(step, prefetches)
    key = (step, id(lookup))  # a view's prefetches are its class's: they live as long as the process
    statements = _RELATED.get(key)
    if statements is None:
        queryset, _ = related_queryset(step, prefetches)

        def build(ids: list) -> QuerySet:
            return slug_rows(step, queryset, ids) if step.nested is None else nested_rows(step, queryset, ids)

        statements = ForIds(build)
        statements.source = lookup  # kept alive with its statements, so that its id names it
        with _RELATED_LOCK:
            statements = _RELATED.setdefault(key, statements)
    _, rows = statements.fetchall(alias, ids, as_dicts=step.nested is not None)
    lists: dict[Any, list] = {}
    if step.nested is None:
        for parent, _, slug in rows:
            lists.setdefault(parent, []).append(slug)
        return lists
    _, inner = related_queryset(step, prefetches)
    for row, item in zip(rows, step.nested.represent(rows, inner, alias)):
        lists.setdefault(row[PARENT], []).append(item)
    return lists


FOLDED = "values_list_folded_"  # the prefix of the aliases a related list read with its row has
JSON_COLUMNS = PLAIN_COLUMNS | {"DateTimeField"}  # what a nested list read as JSON reads back exactly


class JSONArray(Subquery):
    """A subquery's rows, each one JSON value, as a JSON array in the subquery's order (PostgreSQL)."""

    template = "to_jsonb(ARRAY(%(subquery)s))"

    def __init__(self, queryset: QuerySet):
        super().__init__(queryset, output_field=JSONField())


def folded_list(step: _Related, prefetches: Sequence):
    """A related list as one column of its parent row's statement (PostgreSQL), read as the view's prefetch of the
    relation reads it (its order, its `distinct()`): a slug list as an array of its slugs, a nested list as a JSON
    array of its rows' columns (`json_columns()`). None when it cannot be read so: a slug list `through_rows()`
    cannot read (or distinct by a slug that is not unique), a nested list with columns JSON does not give back
    exactly or lists of its own; such a list is read by a statement of its own, as before."""
    from django.contrib.postgres.expressions import ArraySubquery

    queryset, _ = related_queryset(step, prefetches)
    if step.nested is None:
        # Distinct by the slug alone is distinct by the related row only when slugs are unique.
        if queryset.query.distinct and not step.model._meta.get_field(step.slug).unique:
            return None
        # Read from the through table, each slug by key: a join in a subquery run for each row would have
        # PostgreSQL hash the related table once a row, where the related table is small.
        rows = through_rows(step, queryset)
        if rows is None:
            return None
        _, to_listed, _ = step.through
        return ArraySubquery(rows.filter(**{to_listed: OuterRef("pk")}).values(RELATED_SLUG))
    columns = step.nested.json_columns()
    if columns is None:
        return None
    plain, keyed = keyed_columns(step.model, list(columns))  # by key, as above
    item = JSONObject(**{lookup: F(lookup) for lookup in plain}, **keyed)
    return JSONArray(queryset.filter(**{step.back: OuterRef("pk")}).values(**{FOLDED: item}))


def unfold(step: _Related, rows: Sequence[dict], prefetches: Sequence, alias: str | None) -> None:
    """Each row's related list from the column `folded_list()` read it into, as the list's own statement gives it."""
    folded = FOLDED + step.name
    if step.nested is None:
        for row in rows:
            row[step.name] = row[folded]
        return
    times = [lookup for lookup, kind in step.nested.json_columns().items() if kind == "DateTimeField"]
    fromisoformat = datetime.fromisoformat
    items, owners = [], []
    for row in rows:
        row[step.name] = []
        for item in row[folded]:
            for lookup in times:
                if item[lookup] is not None:
                    item[lookup] = fromisoformat(item[lookup])  # what the column's loader gives, from its JSON text
            items.append(item)
            owners.append(row[step.name])
    _, inner = related_queryset(step, prefetches)
    for owner, item in zip(owners, step.nested.represent(items, inner, alias)):
        owner.append(item)


PAGE_NUMBER = re.compile(r"[1-9][0-9]{0,8}")  # a page number the compiled statements read (else the ORM's paginator)


class ValuesListMixin:
    """A viewset's list read through `values_list` (a ValuesList), filtered, ordered and paginated as before.

    Everything else (detail, writes, the OpenAPI schema) still goes through `serializer_class`. A view that
    defines `list_queryset(user)` has its unfiltered lists read by compiled statements.
    """

    values_list: ValuesList

    def list(self, request, *args, **kwargs):
        answer = self.prepared_list(request)
        if answer is not None:
            return answer
        queryset = self.filter_queryset(self.get_queryset())
        rows = self.values_list.values(queryset)
        page = self.paginate_queryset(rows)
        items = self.values_list.represent(list(rows) if page is None else page,
                                           queryset._prefetch_related_lookups)
        return self.vouched(Response(items) if page is None else self.get_paginated_response(items), items)

    def vouched(self, response: Response, items: Sequence[dict]) -> Response:
        """The response, saying whether its data is plain JSON (core.renderers.JSONRenderer then writes it faster)."""
        data = response.data
        response.plain_json = self.values_list.plain(items) and (data is items or type(data) in (dict, OrderedDict) and all(
            type(key) is str and (value is items or is_plain(value)) for key, value in data.items()))
        return response

    # `list_queryset(user)`: what `get_queryset()` gives a list request by `user`, depending on the user only
    # through `pk`, `is_superuser` and `is_active`. A view without one has every list read through the ORM.
    list_queryset: Callable[[Any], QuerySet] | None = None

    def plain_ordering(self, request) -> tuple[str, ...] | None:
        """The ordering a list request asks for, when it names no filter and the view's filter backends do
        nothing else (else None)."""
        ordering: tuple[str, ...] = ()
        for backend_class in self.filter_backends:
            backend = backend_class()
            if isinstance(backend, FilterBackend) and not backend.names_a_filter(request, self.queryset, self):
                continue
            if isinstance(backend, OrderingFilter):
                ordering = tuple(backend.get_ordering(request, self.queryset, self) or ())
                continue
            return None
        return ordering

    def prepared_list(self, request) -> Response | None:
        """The page read by one compiled statement (its rows and their total), or None when the request is
        not a plain one: a filter, a page number other than a positive integer, a page past the last one."""
        user, paginator = request.user, self.paginator
        if paginator is None or not getattr(user, "is_authenticated", False):
            return None
        page_size = paginator.get_page_size(request)
        number = request.query_params.get(paginator.page_query_param, "1")
        if not page_size or not PAGE_NUMBER.fullmatch(number):
            return None
        ordering = self.plain_ordering(request)
        if ordering is None or self.list_queryset is None:
            return None
        number = int(number)
        # What the items depend on besides the rows: the time zone times are shown in, the language.
        made_as = (timezone.get_current_timezone_name(), translation.get_language())
        found = self.list_pages(page_size).page(user, number, page_size, alias=self.queryset.db, shape=ordering,
                                                made_as=made_as)
        if found is None:
            return None  # past the last page: the ORM's paginator answers 404 as it always has
        items, total = found
        counted = paginator.django_paginator_class((), page_size)
        counted.count = total  # the paginator's count, read with the page
        paginator.request, paginator.page = request, Page(items, number, counted)
        if counted.num_pages > 1 and paginator.template is not None:
            paginator.display_page_controls = True
        return self.vouched(self.get_paginated_response(items), items)

    def list_pages(self, size: int) -> Pages:
        """The view's compiled pages for pages of `size` rows (`list_queryset()` ordered as asked, read by
        `values_list`, represented as items), made once. A page of up to BY_KEY_MOST rows reads its related lists
        with its rows (`folded_list()`, on PostgreSQL); a longer one by a statement for each, the cheaper plan for
        hundreds. A short page is remembered when its items depend on nothing but the rows read for it
        (`ValuesList.made_from_rows()`): asked for again, it costs a read of the write stamps."""
        short = size <= BY_KEY_MOST
        attribute = "_list_pages_short" if short else "_list_pages_long"
        pages = type(self).__dict__.get(attribute)
        if pages is None:
            view_class = type(self)
            alias, prefetches = self.queryset.db, self.queryset._prefetch_related_lookups

            def rows(user, shape: tuple) -> QuerySet:
                queryset = view_class().list_queryset(user)
                return queryset.order_by(*shape) if shape else queryset

            if short and self.values_list.made_from_rows(prefetches):
                pages = Pages(rows, partial(self.values_list.values, fold=True), remember=True,
                              make=partial(self.values_list.to_remember, prefetches=prefetches, alias=alias),
                              give=self.values_list.again,
                              also_reads=partial(self.values_list.related_tables, prefetches))
            else:
                pages = Pages(rows, partial(self.values_list.values, fold=short),
                              make=partial(self.values_list.represent, prefetches=prefetches, alias=alias))
            setattr(type(self), attribute, pages)
        return pages
