"""Which addresses the product may call, as the save-side URL check and the call-time guard both decide.

An IPv6 address that carries an IPv4 address inside it (IPv4-mapped and -compatible, NAT64, 6to4, Teredo)
reaches whatever that IPv4 address is: it is judged by the address it carries.
"""

import ipaddress

import pytest

from providers.addresses import embedded_ipv4, is_loopback_host, is_public_ip, parse_ip
from providers.addresses import address_allowed

# IPv6 forms of private, loopback and link-local (cloud metadata) IPv4 addresses.
PRIVATE_INSIDE_IPV6 = [
    "64:ff9b::a9fe:a9fe",  # NAT64 (well-known prefix) of 169.254.169.254
    "64:ff9b::169.254.169.254",  # the same, written with the dotted quad
    "64:ff9b::a00:5",  # NAT64 of 10.0.0.5
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "::7f00:2",  # IPv4-compatible 127.0.0.2
    "::127.0.0.2",  # the same, dotted
    "::a9fe:a9fe",  # IPv4-compatible 169.254.169.254
    "::c0a8:101",  # IPv4-compatible 192.168.1.1
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:a9fe:a9fe",  # IPv4-mapped 169.254.169.254, in hex
    "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo whose client is 10.0.0.1
    "2001:0:a00:1::1",  # Teredo whose server is 10.0.0.1
    "64:ff9b:1::a9fe:a9fe",  # the local-use NAT64 prefix: where it embeds the address is the network's choice
]

# IPv6 forms of public IPv4 addresses: no more refused than the address they carry.
PUBLIC_INSIDE_IPV6 = [
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8
    "::ffff:8.8.8.8",  # IPv4-mapped
    "2002:808:808::1",  # 6to4 of 8.8.8.8
]


@pytest.mark.parametrize("address", PRIVATE_INSIDE_IPV6)
def test_an_ipv6_address_carrying_a_private_ipv4_address_is_not_public(address):
    assert not is_public_ip(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", PRIVATE_INSIDE_IPV6)
def test_the_call_time_guard_refuses_a_resolved_ipv6_address_carrying_a_private_one(address):
    assert address_allowed("evil.example", address, allow_loopback=False) is False
    if address != "::ffff:127.0.0.1":  # IPv4-mapped loopback is this machine: a local server may use it
        assert address_allowed("evil.example", address, allow_loopback=True) is False


@pytest.mark.parametrize(
    "address, carried",
    [
        ("64:ff9b::a9fe:a9fe", ["169.254.169.254"]),
        ("::7f00:2", ["127.0.0.2"]),
        ("::ffff:127.0.0.1", ["127.0.0.1"]),
        ("2002:a9fe:a9fe::1", ["169.254.169.254"]),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", ["65.54.227.120", "192.0.2.45"]),
        ("2606:4700::6810:84e5", []),  # an ordinary global IPv6 address carries none
        ("::1", []),  # loopback and unspecified are IPv6's own, not IPv4-compatible
        ("::", []),
        ("8.8.8.8", []),
    ],
)
def test_the_carried_ipv4_addresses_are_found(address, carried):
    assert [str(a) for a in embedded_ipv4(ipaddress.ip_address(address))] == carried


def test_a_teredo_address_is_public_only_when_both_its_server_and_client_are():
    # Its client, 192.0.2.45, is a documentation address: not public, so neither is the Teredo address.
    assert not is_public_ip(ipaddress.ip_address("2001:0:4136:e378:8000:63bf:3fff:fdd2"))
    # Server 65.54.227.120, client 8.8.8.8 (stored inverted: 0xf7f7f7f7).
    assert is_public_ip(ipaddress.ip_address("2001:0:4136:e378:8000:63bf:f7f7:f7f7"))


@pytest.mark.parametrize("address", PUBLIC_INSIDE_IPV6)
def test_an_ipv6_address_carrying_a_public_ipv4_address_is_public(address):
    assert is_public_ip(ipaddress.ip_address(address))
    assert address_allowed("api.example.com", address, allow_loopback=False) is True


@pytest.mark.parametrize(
    "host, address",
    [
        ("①②⑦.0.0.2", "127.0.0.2"),  # circled digits: NFKC makes them 127
        ("１２７.０.０.１", "127.0.0.1"),  # full-width digits
        ("127。0。0。1", "127.0.0.1"),  # ideographic full stops, which IDNA reads as dots
        ("0177.0.0.2", "127.0.0.2"),  # octal
        ("0x7f.1", "127.0.0.1"),  # hex, two parts
        ("2130706433", "127.0.0.1"),  # one integer
        ("0100.0.0.1", "64.0.0.1"),
        ("[::7f00:2]", "::7f00:2"),
        ("127.0.0.1.", "127.0.0.1"),  # the root's trailing dot
    ],
)
def test_hosts_are_read_as_the_address_a_client_would_reach(host, address):
    assert parse_ip(host) == ipaddress.ip_address(address)


@pytest.mark.parametrize("host", ["١٢٧.0.0.1", "example.com", "1.2.3.4.5", "999.1.1.1", "", "."])
def test_what_is_no_address_is_none_and_never_an_error(host):
    assert parse_ip(host) is None


@pytest.mark.parametrize(
    "host, loopback",
    [
        ("localhost", True), ("LOCALHOST", True), ("localhost.", True), ("ｌｏｃａｌｈｏｓｔ", True),
        ("api.localhost", True), ("127.0.0.2", True), ("①②⑦.0.0.1", True), ("0x7f.1", True), ("::1", True),
        ("::ffff:127.0.0.1", True),
        # Carrying a loopback address is not being one: these go out to a translator or relay.
        ("64:ff9b::7f00:1", False), ("2002:7f00:1::", False), ("::7f00:1", False),
        ("example.com", False), ("10.0.0.1", False),
    ],
)
def test_loopback_hosts(host, loopback):
    assert is_loopback_host(host) is loopback
