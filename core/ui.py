"""What every page of the settings layout shares: who may see it, how long a page of rows is, where to go back,
and the pieces list pages render their rows with (name URLs, times) without the template engine."""

import re
import secrets
from collections.abc import Callable
from datetime import datetime
from functools import lru_cache
from html import escape
from urllib.parse import quote

from django.contrib.auth.mixins import LoginRequiredMixin, PermissionRequiredMixin
from django.contrib.messages import get_messages
from django.core.paginator import Page
from django.core.signals import setting_changed
from django.db import router
from django.db.models import QuerySet
from django.dispatch import receiver
from django.http import HttpRequest
from django.middleware.csrf import get_token
from django.template.defaultfilters import floatformat
from django.template.response import TemplateResponse
from django.urls import get_script_prefix, get_urlconf, reverse
from django.utils import timezone
from django.utils.functional import SimpleLazyObject
from django.utils.http import RFC3986_SUBDELIMS, url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django.utils.translation import get_language

from .rows import Pages

PAGE_SIZE = 50


class SettingsPageMixin(LoginRequiredMixin, PermissionRequiredMixin):
    """Signed-out visitors go to the login page; signed-in users without the permission get 403."""


PAGE_NUMBER = re.compile(r"[1-9][0-9]{0,8}")


class CompiledPagesMixin:
    """A ListView whose pages are read by `pages` (core.rows.Pages: the page and its total in one compiled
    statement) when `compiled_filters()` says how; otherwise (and past the last page) by the ORM's paginator."""

    pages: Pages
    model: type  # the listed model: its database is the one `pages` reads

    def compiled_filters(self) -> dict | None:
        """The request's filters as `pages` takes them, or None when they cannot be compiled."""
        return None

    @staticmethod
    def lazily(build: Callable[[], QuerySet]) -> QuerySet:
        """The view's queryset, built only if the ORM's paginator reads it (a compiled page never does)."""
        return SimpleLazyObject(build)

    def get_template_names(self) -> list[str]:
        return [self.template_name]  # not named after the queryset's model: that would build the queryset

    def paginate_queryset(self, queryset, page_size):
        number = str(self.kwargs.get(self.page_kwarg) or self.request.GET.get(self.page_kwarg) or 1)
        filters = self.compiled_filters()
        if filters is not None and PAGE_NUMBER.fullmatch(number) and self.get_allow_empty() and (
                not self.get_paginate_orphans()):
            found = self.pages.page(self.request.user, int(number), page_size, alias=router.db_for_read(self.model),
                                    **filters)
            if found is not None:
                rows, total = found
                paginator = self.get_paginator((), page_size)
                paginator.count = total  # read with the page
                page = Page(rows, int(number), paginator)
                return paginator, page, rows, page.has_other_pages()
        return super().paginate_queryset(queryset, page_size)


class Uncacheable(Exception):
    """A context value the page's text cannot be remembered by (not plain data)."""


def frozen(value):
    """A context value as a key: plain data (text, numbers, lists and dicts of them) compared by value."""
    if value is None or type(value) in (str, int, bool, float):
        return value
    if isinstance(value, (list, tuple)):
        return tuple(frozen(item) for item in value)
    if isinstance(value, dict):
        return tuple(sorted((key, frozen(item)) for key, item in value.items()))
    raise Uncacheable(type(value).__name__)


# Stand for the rows and the CSRF token in a remembered page: random per process, so no stored text holds them.
ROWS_MARK, CSRF_MARK = (f"page-mark-{secrets.token_hex(16)}" for _ in range(2))


class RememberedPageResponse(TemplateResponse):
    """A list page whose text around its rows (layout, filters, pagination) is rendered once for what it shows.

    The template is rendered with marks for the rows and the CSRF token and kept under `text_key` (every value
    the template reads, see `RememberedPageMixin.page_key()`); each response puts in its rows and a freshly masked
    token. A page with messages to show is rendered in full, as are pages without a key.
    """

    text_key: tuple | None = None
    MOST = 256  # pages kept: filters × page numbers × users' names, bounded
    _texts: dict[tuple, list[str]] = {}

    @property
    def rendered_content(self) -> str:
        if self.text_key is None or len(get_messages(self._request)):
            return super().rendered_content
        parts = self._texts.get(self.text_key)
        if parts is None:
            context = {**self.context_data, "rows": mark_safe(ROWS_MARK), "csrf_token": CSRF_MARK}
            parts = self.resolve_template(self.template_name).render(context, self._request).split(ROWS_MARK)
            if len(self._texts) >= self.MOST:
                self._texts.clear()
            self._texts[self.text_key] = parts
        token = get_token(self._request)  # as `{% csrf_token %}` asks for it: the response sets the cookie
        return self.context_data["rows"].join(part.replace(CSRF_MARK, token) for part in parts)


class RememberedPageMixin:
    """A ListView rendered by RememberedPageResponse: its context is the rows (`rows`, safe HTML), the page
    (`page_obj`, read for its number and counts), the list's truthiness and plain data (filters, choices); the
    layout reads the request's path and the user's name. The template reads nothing else (not the view)."""

    response_class = RememberedPageResponse
    PAGE_CONTEXT = frozenset({"rows", "page_obj", "paginator", "is_paginated", "object_list", "view"})

    def render_to_response(self, context: dict, **kwargs):
        response = super().render_to_response(context, **kwargs)
        try:
            response.text_key = self.page_key(context)
        except Uncacheable:
            response.text_key = None
        return response

    def page_key(self, context: dict) -> tuple:
        page, user = context.get("page_obj"), self.request.user
        return (
            tuple(self.get_template_names()), self.request.path, user.is_authenticated, user.get_username(),
            *page_constants()[1:],
            (page.number, page.paginator.num_pages, page.paginator.count) if page is not None else None,
            bool(context["object_list"]),
            tuple((name, frozen(value)) for name, value in context.items()
                  if name not in self.PAGE_CONTEXT and name != self.get_context_object_name(context["object_list"])),
        )


def safe_next(request: HttpRequest) -> str:
    """The `next` page to return to, when it is a path on this site."""
    target = request.POST.get("next", "")
    return target if url_has_allowed_host_and_scheme(target, allowed_hosts=None) and target.startswith("/") else ""


# Stands for the name while reversing once; a valid name (it matches NameConverter) that no quoting changes.
NAME_PLACEHOLDER = "name-placeholder-0"


@lru_cache(maxsize=64)
def _around_name(view_name: str, script_prefix: str, urlconf: str | None) -> tuple[str, str]:
    """The URL of a `<name:name>` route split around its name, reversed once per route, prefix and URLconf."""
    before, _, after = reverse(view_name, args=[NAME_PLACEHOLDER], urlconf=urlconf).partition(NAME_PLACEHOLDER)
    return before, after


@receiver(setting_changed)
def _forget_urls(*, setting: str, **kwargs) -> None:
    if setting == "ROOT_URLCONF":
        _around_name.cache_clear()


def name_url(view_name: str, name: str) -> str:
    """`reverse(view_name, args=[name])` for routes taking one name, without a full reverse per call.

    A list page links every row (edit, delete, history, test, each endpoint): a reverse costs ~40 µs, and
    hundreds of them were 40% of the page. The name is quoted exactly as `reverse()` quotes a path.
    """
    return name_urls(view_name)(name)


def name_urls(view_name: str) -> Callable[[str], str]:
    """`name_url` for one route, the script prefix and URLconf looked up once (for every row of a page)."""
    before, after = _around_name(view_name, get_script_prefix(), get_urlconf())
    return lambda name: before + (name if type(name) is str and UNQUOTED.fullmatch(name) else
                                  quote(str(name), safe=NAME_SAFE)) + after


NAME_SAFE = RFC3986_SUBDELIMS + "~:@"  # what reverse() leaves unquoted in a path
UNQUOTED = re.compile(r"[A-Za-z0-9_.~-]*")  # characters quote() never changes: most names are only these


def time_html(value: datetime | None, zone=None) -> str:
    """What `settings/_time.html` renders for a value (its final newline included), in `zone` (default: current).

    `{{ value|date:... }}` three times a row through the template engine was a fifth of a list page.
    """
    if not value:
        return '<span class="muted">never</span>\n'
    return _time_html(value, zone or timezone.get_current_timezone())


@lru_cache(maxsize=8192)
def _time_html(value: datetime, zone) -> str:
    """A list shows the same rows again and again: each time is written once per zone (equal datetimes are the
    same instant, or the same naive time, and write alike)."""
    if timezone.is_aware(value):
        value = value.astimezone(zone)
    day = f"{value.year:04d}-{value.month:02d}-{value.day:02d} {value.hour:02d}:{value.minute:02d}"
    # As the `e` format: no name for a naive value, nor for a local time that is ambiguous or imaginary.
    tz = value.tzinfo
    zone_name = (value.tzname() or "") if tz and tz.utcoffset(value.replace(fold=not value.fold)) == tz.utcoffset(
        value) else ""
    return (f'<time datetime="{escape(value.isoformat())}" title="{escape(f"{day}:{value.second:02d} {zone_name}")}">'
            f"{day}</time>\n")


def count_text() -> Callable[[int], str]:
    """For a page: `{{ count|floatformat:"0g" }}` for whole numbers, grouped as the active language groups them.

    The filter parses each number as a Decimal and looks the format up again; a page checks the format once.
    """
    if floatformat(1234567, "0g") == "1,234,567":
        return lambda count: f"{int(count):,}"
    return lambda count: str(floatformat(count, "0g"))


def page_constants() -> tuple:
    """What a list's rows render differently by besides their values: the time zone, the language (labels, number
    grouping), the script prefix and the URLconf (links). Rows remembered across requests are keyed by these."""
    return timezone.get_current_timezone(), get_language(), get_script_prefix(), get_urlconf()


def usage_url(request) -> str | None:
    """The Usage tab's URL (escaped) that a row's calls link to, for users who may see it."""
    return escape(reverse("usage:usage")) if request.user.has_perm("usage.view_usagerecord") else None


def usage_cells(kind: str, url: str | None) -> Callable[[object, str, dict], tuple[str, str]]:
    """For a page: a row's Calls (24 h) and Errors (24 h) cells from its id, escaped name and usage (`calls`,
    `errors`); the calls link to the Usage tab at `url` (`usage_url()`), filtered to the row (None: no link)."""
    text = count_text()

    def cells(pk, name: str, usage: dict) -> tuple[str, str]:
        calls, errors = text(usage.get("calls") or 0), usage.get("errors") or 0
        return (f'<a href="{url}?{kind}={pk}" aria-label="Usage of {name}">{calls}</a>' if url else calls,
                f'<span class="badge badge-danger">{text(errors)}</span>' if errors else "0")

    return cells
