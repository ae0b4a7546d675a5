"""Names as they arrive in URLs, query strings and request bodies.

PostgreSQL text cannot hold the NUL character (a lookup with one is a DataError, so a 500), and no valid
name contains one, so a name with NUL is treated as what it is: the name of nothing.
"""


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
