"""Small template helpers shared by the settings pages (also by pages other apps add to the settings layout)."""

from django import template
from django.utils.html import format_html

from connections import providers
from connections.models import Connection

register = template.Library()


@register.simple_tag(takes_context=True)
def nav_link(context, href: str, label: str, css_class: str = "tab") -> str:
    """A navigation link marked `aria-current="page"` while the current page is under `href`."""
    request = context.get("request")
    current = request is not None and request.path.startswith(href)
    if current:
        return format_html('<a class="{}" href="{}" aria-current="page">{}</a>', css_class, href, label)
    return format_html('<a class="{}" href="{}">{}</a>', css_class, href, label)


@register.filter
def auth_method_label(connection: Connection) -> str:
    """The registry's label for a connection's auth method ("Azure OpenAI (API key)")."""
    return providers.auth_method_label(connection.provider, connection.auth_method)


@register.filter
def field_label(name: str) -> str:
    """A recorded field name (`secrets.api_key`, `config.region`, `name`) as the label users know."""
    _, _, short = name.rpartition(".")
    return providers.FIELD_LABELS.get(short, short.replace("_", " ").capitalize())
