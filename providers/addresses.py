"""Which addresses the product may call: public ones, loopback for local servers, and what the operator allowed.

Used on save (a literal private address or a `localhost`/`*.internal` name is refused) and at call time
(every address a host resolves to is checked before connecting).
"""

import ipaddress
import re
import socket

from django.conf import settings

METADATA_HOSTNAMES = {"metadata", "metadata.google.internal", "instance-data"}
# Forms inet_aton accepts besides dotted quads: `2130706433`, `127.1`, `0x7f.0.0.1`, `0177.0.0.1`.
LEGACY_IPV4 = re.compile(r"(0x[0-9a-f]+|\d+)(\.(0x[0-9a-f]+|\d+)){0,3}", re.IGNORECASE)


def parse_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address a host string denotes, including legacy forms such as `2130706433` or `0x7f.1`."""
    candidate = host.strip("[]")
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


def is_public_ip(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """False for private, loopback, link-local (cloud metadata), multicast, reserved and unspecified."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def is_loopback_host(host: str) -> bool:
    address = parse_ip(host)
    if address is not None:
        return address.is_loopback or bool(getattr(address, "ipv4_mapped", None) and address.ipv4_mapped.is_loopback)
    return host == "localhost" or host.endswith(".localhost")


def is_allowed_private_host(host: str) -> bool:
    """Hosts the operator listed in ALLOWED_PRIVATE_HOSTS (compared as names, or as IP addresses)."""
    allowed = settings.ALLOWED_PRIVATE_HOSTS
    if host in allowed:
        return True
    address = parse_ip(host)
    return address is not None and any(parse_ip(entry) == address for entry in allowed)


def is_private_host_name(host: str) -> bool:
    return (
        host in METADATA_HOSTNAMES
        or host == "localhost"
        or host.endswith((".localhost", ".internal", ".local"))
    )


def address_allowed(host: str, address: str, *, allow_loopback: bool) -> bool:
    """At call time: public addresses, hosts or addresses the operator allowed, loopback for local servers."""
    ip = parse_ip(address)
    if ip is None:
        return False
    if is_public_ip(ip) or is_allowed_private_host(host) or is_allowed_private_host(str(ip)):
        return True
    mapped = getattr(ip, "ipv4_mapped", None)
    return allow_loopback and (ip.is_loopback or bool(mapped and mapped.is_loopback))
