"""Names of connections and endpoints: the rule they follow, and how they arrive in URLs and bodies.

PostgreSQL text cannot hold the NUL character (a lookup with one is a DataError, so a 500), and no valid
name contains one, so a name with NUL is treated as what it is: the name of nothing.
"""

import re

from django.core.exceptions import ValidationError

NAME_PATTERN = re.compile(r"[a-z][a-z0-9_-]{0,63}")
NAME_HELP = "1–64 lowercase letters, digits, '-' and '_', starting with a letter."


def validate_name(value: str) -> None:
    """Names are 1–64 lowercase letters, digits, `-` and `_`, starting with a letter; never case-folded."""
    if NAME_PATTERN.fullmatch(value):
        return
    if NAME_PATTERN.fullmatch(value.lower()):
        raise ValidationError(
            f"Use lowercase letters only: names are not case-folded (try '{value.lower()}').", code="uppercase"
        )
    if len(value) > 64:
        raise ValidationError("Use at most 64 characters.", code="max_length")
    raise ValidationError(
        "Use lowercase letters, digits, '-' and '_', starting with a letter (for example 'openai-production').",
        code="invalid",
    )


class NameConverter:
    """`<name:name>` in URL patterns: anything up to the next slash except NUL (which then 404s unrouted)."""

    regex = r"[^/\x00]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


def could_name_something(text: str) -> bool:
    """False for text that no stored name can equal and PostgreSQL cannot even compare (it holds NUL)."""
    return "\x00" not in text
