"""Plumbing shared by the REST API (`/api/v1/`): parsing, pagination, permissions, errors, the base serializer."""

import json
from collections.abc import Mapping

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, models
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import exceptions, pagination, permissions, serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

from .body_limits import API_TOO_LARGE, MAX_BODY_BYTES
from .names import NAME_PATTERN, NameConverter, could_name_something

# Names in URLs: anything up to the next slash, so an odd name is a clean 404 rather than an unrouted path
# (except NUL, which PostgreSQL cannot compare: core/names.py).
NAME_IN_URL = NameConverter.regex


class RequestTooLarge(exceptions.APIException):
    """Larger bodies are refused before parsing (core/body_limits.py refuses a declared length even earlier)."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = API_TOO_LARGE
    default_code = "request_too_large"


class LimitedJSONParser(JSONParser):
    """DRF's JSON parser with a size limit, and errors (deep nesting, lone surrogates) as 400 instead of 500.

    DRF reads the request stream itself, so Django's DATA_UPLOAD_MAX_MEMORY_SIZE never applies here.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        request = (parser_context or {}).get("request")
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0) if request is not None else 0
        except ValueError:
            declared = 0
        if declared > MAX_BODY_BYTES:
            raise RequestTooLarge()
        raw = stream.read(MAX_BODY_BYTES + 1)
        if len(raw) > MAX_BODY_BYTES:
            raise RequestTooLarge()
        encoding = (parser_context or {}).get("encoding") or "utf-8"
        try:
            data = json.loads(raw.decode(encoding), parse_constant=reject_constant)
            # Lone surrogates (`"\ud800"`) parse but cannot be stored or rendered as UTF-8.
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except (ValueError, UnicodeError, RecursionError, LookupError) as error:
            raise exceptions.ParseError(f"JSON parse error - {type(error).__name__}: {short_reason(error)}") from None
        return data


def reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def short_reason(error: Exception) -> str:
    """The parser's reason without any part of the body (a body may hold a secret)."""
    if isinstance(error, json.JSONDecodeError):
        return f"{error.msg} at line {error.lineno} column {error.colno}"
    if isinstance(error, RecursionError):
        return "nested too deeply"
    if isinstance(error, UnicodeError):
        return "not valid UTF-8 text"
    return "not valid JSON"


class Pagination(pagination.PageNumberPagination):
    """`?page=` with 50 per page; `?page_size=` up to 500."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class FilterBackend(DjangoFilterBackend):
    """django-filter's backend, leaving alone a request that names none of the view's filters.

    Such a request filters nothing, yet building the FilterSet (a deep copy of every filter) and validating its
    empty form was a sixth of a short list's time. A parameter starting with a filter's name counts as naming
    it (range filters read `<name>_min`, `<name>_after`…), so anything the FilterSet could answer or refuse
    still goes to it.
    """

    def filter_queryset(self, request, queryset, view):
        if not self.names_a_filter(request, queryset, view):
            return queryset
        return super().filter_queryset(request, queryset, view)

    def names_a_filter(self, request, queryset, view) -> bool:
        """Whether the request names one of the view's filters (a view without a FilterSet filters nothing)."""
        filterset_class = self.get_filterset_class(view, queryset)
        return filterset_class is not None and any(
            parameter.startswith(name) for parameter in request.query_params for name in filterset_class.base_filters
        )


class ModelPermissions(permissions.DjangoModelPermissions):
    """Django model permissions, with `view` needed for reads too (DRF's class lets any user read)."""

    perms_map = {
        **permissions.DjangoModelPermissions.perms_map,
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
        "OPTIONS": ["%(app_label)s.view_%(model_name)s"],
    }

    def _queryset(self, view):
        """The view's own queryset when it has one: only its model is read here, and `get_queryset()` would build
        the request's whole queryset (joins, the team's scope) for nothing."""
        queryset = getattr(view, "queryset", None)
        return queryset if queryset is not None else super()._queryset(view)


def has_permission(perm: str) -> type[permissions.BasePermission]:
    """A permission class requiring one named Django permission."""

    class HasPermission(permissions.BasePermission):
        def has_permission(self, request, view) -> bool:
            return bool(request.user and request.user.is_authenticated and request.user.has_perm(perm))

    HasPermission.__name__ = f"Has_{perm.replace('.', '_')}"
    return HasPermission


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with a concurrent change; reload and try again."
    default_code = "conflict"


def exception_handler(exc, context):
    """DRF's handler, plus model validation errors as 400 and database conflicts as 409 (never a 500)."""
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(django_errors_to_drf(exc))
    elif isinstance(exc, IntegrityError):
        exc = Conflict()
    return drf_exception_handler(exc, context)


def django_errors_to_drf(error: DjangoValidationError) -> dict:
    """Django's errors keyed `secrets.api_key` become DRF's nested `{"secrets": {"api_key": [...]}}`."""
    non_field = api_settings.NON_FIELD_ERRORS_KEY
    if not hasattr(error, "error_dict"):
        return {non_field: error.messages}
    result: dict = {}
    for key, messages in error.message_dict.items():
        key = non_field if key == NON_FIELD_ERRORS else key
        head, dot, tail = key.partition(".")
        if dot:
            bucket = result.setdefault(head, {})
            if isinstance(bucket, list):
                bucket = result[head] = {non_field: bucket}
            bucket.setdefault(tail, []).extend(messages)
        elif isinstance(result.get(key), dict):
            result[key].setdefault(non_field, []).extend(messages)
        else:
            result.setdefault(key, []).extend(messages)
    return result


class ModelCleanSerializer(serializers.ModelSerializer):
    """Checks the request's shape, then runs the model's own validation (`full_clean()`), mapping its errors.

    DRF's ModelSerializer does not call `Model.clean()`; this does, on the very instance that is then saved,
    so the model stays the one place for its rules. Unknown fields are refused, naming them.
    """

    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {name: [f"Unknown field '{name}'. Known fields: {', '.join(self.writable_field_names())}."]
                     for name in unknown}
                )
        return super().to_internal_value(data)

    def writable_field_names(self) -> list[str]:
        return [name for name, field in self.fields.items() if not field.read_only]

    def build_instance(self, attrs: dict) -> models.Model:
        """The instance as the request would leave it (not saved)."""
        instance = self.instance if self.instance is not None else self.Meta.model()
        for name, value in attrs.items():
            setattr(instance, name, value)
        return instance

    def validate(self, attrs: dict) -> dict:
        instance = self.build_instance(attrs)
        try:
            instance.full_clean()
        except DjangoValidationError as error:
            raise serializers.ValidationError(django_errors_to_drf(error)) from None
        self.cleaned_instance = instance
        return attrs

    def create(self, validated_data):
        return self.save_instance(self.cleaned_instance)

    def update(self, instance, validated_data):
        return self.save_instance(self.cleaned_instance)

    def save_instance(self, instance: models.Model) -> models.Model:
        instance.save()
        return instance


def document_name_pattern(result: dict, generator, request, public) -> dict:
    """drf-spectacular hook: state the name rule (`validate_name`, a function) as a pattern in the schema."""
    for component in result.get("components", {}).get("schemas", {}).values():
        name = component.get("properties", {}).get("name")
        if name and name.get("maxLength") == 64 and not name.get("readOnly"):
            name["pattern"] = f"^{NAME_PATTERN.pattern}$"
    return result


class NameRelatedField(serializers.SlugRelatedField):
    """A related object given by its name; text that cannot be a name (core/names.py) is reported as not found
    without being echoed."""

    default_error_messages = {
        # Not echoed: a value that cannot be a name may be a key pasted into the wrong field.
        "not_a_name": "No object has this name: names are lowercase letters, digits, '-' and '_'.",
    }

    def __init__(self, **kwargs):
        super().__init__(slug_field="name", **kwargs)

    def to_internal_value(self, data):
        if isinstance(data, str) and not (could_name_something(data) and NAME_PATTERN.fullmatch(data)):
            self.fail("not_a_name")
        return super().to_internal_value(data)


class JSONObjectField(serializers.Field):
    """A JSON object of string keys; its values are checked by the model (types included)."""

    default_error_messages = {"not_an_object": "Expected a JSON object of field names and values."}

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            self.fail("not_an_object")
        return dict(data)

    def to_representation(self, value):
        return value


# --- Error answers in the schema ---------------------------------------------------------------------------

DETAIL = {"type": "object", "required": ["detail"], "properties": {"detail": {"type": "string"}}}
ERROR_ANSWERS = {
    "400": ("The request is invalid: field errors by field name (or `detail` for a body that is not JSON).",
            {"type": "object", "additionalProperties": True}),
    "401": ("No valid API token (or session).", DETAIL),
    "403": ("The user lacks the permission this needs.", DETAIL),
    "404": ("Nothing by that name (or no such page).", DETAIL),
    "409": ("In use (a connection's endpoints), or a concurrent change won.", DETAIL),
    "413": (f"The body is larger than {MAX_BODY_BYTES} bytes.", DETAIL),
    "415": ("The body is not JSON.", DETAIL),
}


def error_statuses(path: str, method: str, operation: dict) -> tuple[str, ...]:
    """Which error answers an operation can give, from its shape: who may call, what it names, what it takes."""
    statuses = ["401", "403"]
    if "{" in path or any(p.get("name") == "page" for p in operation.get("parameters", [])):
        statuses.append("404")
    if any(p.get("in") == "query" for p in operation.get("parameters", [])) or method in ("post", "put", "patch"):
        statuses.append("400")
    if method in ("post", "put", "patch"):
        statuses += ["409", "413", "415"]
    if method == "delete":
        statuses.append("409")
    return tuple(statuses)


def document_error_responses(result: dict, generator, request, public) -> dict:
    """drf-spectacular hook: every REST API operation documents the error answers DRF and our handler give."""
    for path, operations in result.get("paths", {}).items():
        if not path.startswith("/api/"):
            continue
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            for status_code in error_statuses(path, method, operation):
                description, schema = ERROR_ANSWERS[status_code]
                responses.setdefault(
                    status_code, {"description": description, "content": {"application/json": {"schema": schema}}}
                )
    return result
