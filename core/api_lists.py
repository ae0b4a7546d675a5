"""List reads from `.values()` rows, represented by the serializer's own fields: the same JSON, a fraction of the CPU.

Through a ModelSerializer, a page of 500 connections builds 500 model instances and their endpoints' (a
queryset cloned per row for the prefetch), then asks every field for its attribute through descriptors;
that, not the database, was most of the list's time (docs/benchmarks.md). Here the serializer's fields say
which columns to read and represent each value with their own `to_representation`, so a field added to the
serializer is read and shown alike without touching this; a field this cannot read by itself (a method
field, a `source="*"` field) must be given as `computed`, or the first list fails loudly. Tests compare the
output with the serializer's on the same rows.
"""

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from dataclasses import field as dataclass_field
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db.models import ForeignObjectRel, Model, QuerySet
from rest_framework import ISO_8601, serializers
from rest_framework.settings import api_settings
from rest_framework.response import Response
from rest_framework.relations import ManyRelatedField, RelatedField, SlugRelatedField


@dataclass(frozen=True)
class Computed:
    """A field represented from several columns of the row: `.values()` lookups, and expressions by alias.

    `by_field`: `represent` gives the value the model's attribute would (a property computed from columns),
    which the serializer's field then represents as it represents the attribute (None as None).
    """

    columns: tuple[str, ...]
    represent: Callable[[dict], Any]
    expressions: dict = dataclass_field(default_factory=dict)
    by_field: bool = False


@dataclass(frozen=True)
class _Derived:
    """A `by_field` computed value, represented by the serializer's field."""

    name: str
    value: Callable[[dict], Any]
    representation: Callable[[], Callable[[Any], Any]]


@dataclass(frozen=True)
class _Column:
    name: str
    lookup: str
    representation: Callable[[], Callable[[Any], Any]] | None  # for each list, the value's representation; None: as read


@dataclass(frozen=True)
class _Many:
    """The slugs of a reverse foreign key's rows (a `many=True` SlugRelatedField), read in one query a page."""

    name: str
    model: type[Model]
    foreign_key: str  # the related model's column pointing back (attname)
    slug: str


class ValuesList:
    """How to read and represent a serializer's list from `.values()` rows; built once, on first use."""

    def __init__(self, serializer_class: type[serializers.ModelSerializer], computed: dict[str, Computed] | None = None):
        self.serializer_class = serializer_class
        self.computed = computed or {}
        self._plan: tuple[list, list[str], dict] | None = None

    def plan(self) -> tuple[list, list[str], dict]:
        """Each readable field in the serializer's order (a column, a computed value or a many-relation), and the
        `.values()` lookups and expressions they need."""
        if self._plan is None:
            model = self.serializer_class.Meta.model
            steps, lookups, expressions = [], [model._meta.pk.attname], {}
            for name, field in self.serializer_class().fields.items():
                if field.write_only:
                    continue
                if name in self.computed:
                    computed = self.computed[name]
                    steps.append((name, _Derived(name, computed.represent, representation(field))
                                  if computed.by_field else computed))
                    lookups += self.computed[name].columns
                    expressions.update(self.computed[name].expressions)
                elif isinstance(field, ManyRelatedField):
                    steps.append((name, many_relation(model, name, field)))
                elif isinstance(field, RelatedField):
                    step = _Column(name, lookup_of(model, name, field.source_attrs) + "__" + slug_of(name, field), None)
                    steps.append((name, step))
                    lookups.append(step.lookup)
                elif field.source == "*" or isinstance(field, serializers.SerializerMethodField):
                    raise ImproperlyConfigured(f"{self.serializer_class.__name__}.{name}: give it as `computed`.")
                else:
                    step = _Column(name, lookup_of(model, name, field.source_attrs), representation(field))
                    steps.append((name, step))
                    lookups.append(step.lookup)
            self._plan = (steps, list(dict.fromkeys(lookups)), expressions)
        return self._plan

    def values(self, queryset: QuerySet) -> QuerySet:
        """The queryset (filtered and ordered as the view wants) reading just the columns the fields need."""
        _, lookups, expressions = self.plan()
        return queryset.prefetch_related(None).values(*lookups, **expressions)

    def represent(self, rows: Sequence[dict]) -> list[dict]:
        """The serializer's output for these rows: keys in its order, None as it gives None."""
        steps, lookups, _ = self.plan()
        pk = lookups[0]
        many = {step.name: related_slugs(step, [row[pk] for row in rows])
                for _, step in steps if isinstance(step, _Many)}
        steps = [(name, step, step.representation() if type(step) in (_Column, _Derived) and step.representation
                  else None) for name, step in steps]
        items = []
        for row in rows:
            item = {}
            for name, step, represent in steps:
                if type(step) is _Column:
                    value = row[step.lookup]
                    item[name] = value if value is None or represent is None else represent(value)
                elif type(step) is _Many:
                    item[name] = many[name].get(row[pk], [])
                elif type(step) is _Derived:
                    value = step.value(row)
                    item[name] = None if value is None else represent(value)
                else:
                    item[name] = step.represent(row)
            items.append(item)
        return items


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

            def represent(value):
                if type(value) is not datetime or value.utcoffset() is None:
                    return field.to_representation(value)
                text = value.astimezone(zone).isoformat()
                return text[:-6] + "Z" if text.endswith("+00:00") else text

            return represent

        return per_list
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


def many_relation(model: type[Model], name: str, field: ManyRelatedField) -> _Many:
    relation = model._meta.get_field(field.source)
    if not isinstance(relation, ForeignObjectRel) or not relation.one_to_many:
        raise ImproperlyConfigured(f"{name}: only reverse foreign keys are read from values; give it as `computed`.")
    return _Many(name, relation.related_model, relation.field.attname, slug_of(name, field.child_relation))


def related_slugs(step: _Many, ids: list) -> dict[Any, list]:
    """Parent id → the related rows' slugs, in the related model's default order (as a prefetch reads them)."""
    slugs: dict[Any, list] = {}
    if ids:
        rows = step.model._default_manager.filter(**{f"{step.foreign_key}__in": ids}).values_list(step.foreign_key,
                                                                                                  step.slug)
        for parent, slug in rows:
            slugs.setdefault(parent, []).append(slug)
    return slugs


class ValuesListMixin:
    """A viewset's list read through `values_list` (a ValuesList), filtered, ordered and paginated as before.

    Everything else (detail, writes, the OpenAPI schema) still goes through `serializer_class`.
    """

    values_list: ValuesList

    def list(self, request, *args, **kwargs):
        rows = self.values_list.values(self.filter_queryset(self.get_queryset()))
        page = self.paginate_queryset(rows)
        if page is None:
            return Response(self.values_list.represent(list(rows)))
        return self.get_paginated_response(self.values_list.represent(page))
