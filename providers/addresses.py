"""Which addresses the product may call: public ones, loopback for local servers, and what the operator allowed.

Used on save (a literal private address or a `localhost`/`*.internal` name is refused) and at call time
(every address a host resolves to is checked before connecting).

A host is read as HTTP clients read it before it is judged: NFKC-normalised as IDNA does (`①②⑦.0.0.2` and
full-width digits are `127.0.0.2`), in any of the legacy IPv4 forms the resolver accepts (`2130706433`,
`0x7f.1`, `0177.0.0.1`), and an IPv6 address that carries an IPv4 address (IPv4-mapped and -compatible,
NAT64, 6to4, Teredo) by the address it carries, since that is where its packets end up.
"""

import ipaddress
import re
import socket
import unicodedata
from functools import lru_cache

from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA_HOSTNAMES = {"metadata", "metadata.google.internal", "instance-data"}
# Forms inet_aton accepts besides dotted quads: `2130706433`, `127.1`, `0x7f.0.0.1`, `0177.0.0.1` (ASCII digits only).
LEGACY_IPV4 = re.compile(r"(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+)){0,3}", re.IGNORECASE | re.ASCII)
# Full stops IDNA reads as dots besides `.` (NFKC already turns the full-width one into `.`).
IDNA_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})

NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # the well-known prefix: the IPv4 address is the last 32 bits
# The local-use NAT64 prefix: each network chooses where in it the IPv4 address sits, so none can be read off.
NAT64_LOCAL_USE = ipaddress.IPv6Network("64:ff9b:1::/48")
IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # deprecated `::a.b.c.d` (but `::` and `::1` are IPv6's own)


def normalise_host(host: str) -> str:
    """A host as clients compare it: NFKC-normalised, IDNA's full stops as dots, lowercase, without the brackets
    of an IPv6 literal or the root's trailing dot."""
    host = unicodedata.normalize("NFKC", host).translate(IDNA_DOTS).lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host.rstrip(".")


@lru_cache(maxsize=4096)
def parse_ip(host: str) -> IPAddress | None:
    """The IP address a host string denotes, including legacy forms such as `2130706433` or `0x7f.1`.

    Remembered: every call checks its base URL's host, and the answer depends on the text alone."""
    candidate = normalise_host(host)
    try:
        return ipaddress.ip_address(candidate)
    except ValueError:
        pass
    if LEGACY_IPV4.fullmatch(candidate):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(candidate))
        except OSError:
            return None
    return None


def embedded_ipv4(address: IPAddress) -> tuple[ipaddress.IPv4Address, ...]:
    """The IPv4 addresses an IPv6 address carries and reaches: IPv4-mapped, NAT64 (well-known prefix), 6to4,
    Teredo (its server and its client) and IPv4-compatible. Empty for any other address."""
    if not isinstance(address, ipaddress.IPv6Address):
        return ()
    low_32_bits = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.ipv4_mapped is not None:
        return (address.ipv4_mapped,)
    if address in NAT64:
        return (low_32_bits,)
    if address.sixtofour is not None:
        return (address.sixtofour,)
    if address.teredo is not None:
        return address.teredo
    if address in IPV4_COMPATIBLE and int(address) > 1:
        return (low_32_bits,)
    return ()


def is_public_ip(address: IPAddress) -> bool:
    """False for private, loopback, link-local (cloud metadata), multicast, reserved and unspecified, and for
    an IPv6 address carrying any address that is not public."""
    carried = embedded_ipv4(address)
    if carried:
        return all(is_public_ip(inner) for inner in carried)
    if address in NAT64_LOCAL_USE:
        return False
    return address.is_global and not address.is_multicast


def is_loopback_ip(address: IPAddress) -> bool:
    """This machine: 127.0.0.0/8, ::1 and IPv4-mapped loopback. (An address that merely carries a loopback
    address, through NAT64, 6to4, Teredo or the IPv4-compatible form, goes out to a translator or relay.)"""
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or bool(mapped and mapped.is_loopback)


def is_loopback_host(host: str) -> bool:
    address = parse_ip(host)
    if address is not None:
        return is_loopback_ip(address)
    name = normalise_host(host)
    return name == "localhost" or name.endswith(".localhost")


def is_allowed_private_host(host: str) -> bool:
    """Hosts the operator listed in ALLOWED_PRIVATE_HOSTS (compared as names, or as IP addresses)."""
    allowed = settings.ALLOWED_PRIVATE_HOSTS
    name = normalise_host(host)
    if name in allowed or name in (normalise_host(entry) for entry in allowed):
        return True
    address = parse_ip(name)
    return address is not None and any(parse_ip(entry) == address for entry in allowed)


def is_private_host_name(host: str) -> bool:
    name = normalise_host(host)
    return (
        name in METADATA_HOSTNAMES
        or name == "localhost"
        or name.endswith((".localhost", ".internal", ".local"))
    )


def is_private_host(host: str) -> bool:
    """A host that denotes a private, loopback, link-local or metadata address, or names one by convention."""
    address = parse_ip(host)
    if address is not None:
        return not is_public_ip(address)
    return is_private_host_name(host)


def address_allowed(host: str, address: str, *, allow_loopback: bool) -> bool:
    """At call time: public addresses, hosts or addresses the operator allowed, loopback for local servers."""
    ip = parse_ip(address)
    if ip is None:
        return False
    if is_public_ip(ip) or is_allowed_private_host(host) or is_allowed_private_host(str(ip)):
        return True
    return allow_loopback and is_loopback_ip(ip)
