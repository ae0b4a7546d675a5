"""The catalogue's labels in templates: auth methods and recorded field names as users know them."""

from django import template

from providers import catalogue

register = template.Library()


@register.filter
def auth_method_label(connection) -> str:
    """The catalogue's label for a connection's auth method ("Azure OpenAI (API key)")."""
    return catalogue.auth_method_label(connection.provider, connection.auth_method)


@register.filter
def field_label(name: str) -> str:
    """A recorded field name (`secrets.api_key`, `config.region`, `name`) as the label users know."""
    _, _, short = name.rpartition(".")
    return catalogue.FIELD_LABELS.get(short, short.replace("_", " ").capitalize())
