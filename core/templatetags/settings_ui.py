"""Template helpers of the settings layout, shared by every app's pages: navigation and fast name URLs."""

from django import template
from django.utils.html import format_html

from core import ui

register = template.Library()


@register.simple_tag(takes_context=True)
def nav_link(context, href: str, label: str, css_class: str = "tab") -> str:
    """A navigation link marked `aria-current="page"` while the current page is under `href`."""
    request = context.get("request")
    current = request is not None and request.path.startswith(href)
    if current:
        return format_html('<a class="{}" href="{}" aria-current="page">{}</a>', css_class, href, label)
    return format_html('<a class="{}" href="{}">{}</a>', css_class, href, label)


@register.simple_tag
def name_url(view_name: str, name: str) -> str:
    """`{% url view_name name %}` for routes taking one name, without a full reverse per call (core.ui.name_url)."""
    return ui.name_url(view_name, name)
