"""The SSRF guard: every rule of sagas/engine/hosts.py."""

import ipaddress
import socket

import pytest

from sagas.engine.hosts import (
    forbidden_address,
    host_matches,
    loose_ipv4,
    redirect_allowed,
    resolved_url_problem,
    url_problem,
)

METADATA_SPELLINGS = [
    "http://169.254.169.254/latest/meta-data/",
    "http://169.254.0.1/",
    "http://[fe80::1]/",
    "http://[fe80::1%25eth0]/",
    "http://[fd00:ec2::254]/",
    "http://[::ffff:169.254.169.254]/",
    "http://[::ffff:a9fe:a9fe]/",
    "http://[::169.254.169.254]/",
    "http://[2002:a9fe:a9fe::1]/",  # 6to4
    "http://[64:ff9b::169.254.169.254]/",  # NAT64
    "http://2852039166/",  # decimal
    "http://0xa9fea9fe/",  # hex
    "http://0xA9.0xFE.0xA9.0xFE/",
    "http://0251.0376.0251.0376/",  # octal
    "http://169.254.43518/",  # a.b.c
    "http://169.16689662/",  # a.b
    "http://169.254.169.254./",  # trailing dot
    "https://100.100.100.200/",  # Alibaba
]


@pytest.mark.parametrize("url", METADATA_SPELLINGS)
def test_metadata_and_link_local_refused_in_every_spelling(url):
    assert url_problem(url, []) is not None
    assert url_problem(url, ["*.example.com", "169.254.169.254"]) is not None


@pytest.mark.parametrize(
    "url",
    [
        "http://inventory:8000/reservations",
        "https://payments.internal.example.com/charge?x=1",
        "http://127.0.0.1:9000/",
        "http://10.0.0.5/",
        "http://[::1]:8080/",
        "http://saga_worker:8000/",
        "http://localhost./",
    ],
)
def test_ordinary_participants_allowed_without_an_allow_list(url):
    assert url_problem(url, []) is None


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("ftp://inventory/x", "http or https"),
        ("file:///etc/passwd", "http or https"),
        ("gopher://127.0.0.1:6379/_INFO", "http or https"),
        ("http:///path", "no host"),
        ("http://user:pw@inventory/", "credentials"),
        ("http://inventory@evil.example/", "credentials"),
        ("http://inventory:99999/", "valid URL"),
        ("http://inventory:0/", "port 0"),
        ("http://inventory/a b", "whitespace"),
        ("http://inventory/\r\nX-Injected: 1", "control"),
        ("http://inventory/\x00", "control"),
        ("http://evil.example\\@inventory/", "backslash"),
        ("http://2130706433/", "non-standard spelling of 127.0.0.1"),
        ("http://0177.0.0.1/", "non-standard spelling"),
        ("http://10.1/", "non-standard spelling"),
        ("http://inv%2eexample/", "not a valid host name"),
        ("http://" + "a" * 4100 + "/", "longer than"),
    ],
)
def test_bad_urls_refused_with_a_reason(url, fragment):
    problem = url_problem(url, [])
    assert problem is not None and fragment in problem


def test_non_string_url_refused():
    assert url_problem(None, []) == "must be a string"


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("inventory", True),
        ("INVENTORY", True),
        ("inventory.", True),
        ("a.svc.local", True),
        ("a.b.svc.local", True),
        ("svc.local", False),  # *.svc.local needs a label before the suffix
        ("evilsvc.local", False),
        ("svc.local.evil.com", False),
        ("inventory2", False),
        ("10.0.0.5", True),
        ("::1", True),
        ("0:0:0:0:0:0:0:1", True),  # the same address written out
        ("10.0.0.6", False),
    ],
)
def test_allow_list_exact_and_suffix(host, allowed):
    patterns = ["inventory", "*.svc.local", "10.0.0.5", "[::1]"]
    assert host_matches(host, patterns) is allowed


def test_allow_list_applies_to_urls():
    allowed = ["inventory", "*.svc.local"]
    assert url_problem("http://inventory:8000/x", allowed) is None
    assert url_problem("https://pay.svc.local/x", allowed) is None
    problem = url_problem("http://other:8000/x", allowed)
    assert problem == "host other is not in SAGA_ALLOWED_HOSTS"


def test_suffix_pattern_never_matches_ip_literals():
    assert not host_matches("10.0.0.5", ["*.0.0.5"])


def test_idna_hosts_match_their_punycode():
    assert host_matches("bücher.example", ["xn--bcher-kva.example"])
    assert url_problem("http://bücher.example/", ["xn--bcher-kva.example"]) is None


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("2852039166", "169.254.169.254"),
        ("0xa9fea9fe", "169.254.169.254"),
        ("0251.0376.0251.0376", "169.254.169.254"),
        ("169.254.43518", "169.254.169.254"),
        ("127.1", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("1.2.3.4", "1.2.3.4"),
        ("256.1.1.1", None),
        ("1.2.3.4.5", None),
        ("08.1.1.1", None),  # not octal
        ("4294967296", None),
        ("example.com", None),
    ],
)
def test_loose_ipv4_reads_like_inet_aton(host, expected):
    result = loose_ipv4(host)
    assert (str(result) if result else None) == expected


def test_forbidden_address_only_for_forbidden_networks():
    assert forbidden_address("169.254.169.254")
    assert forbidden_address("[fd00:ec2::254]")
    assert not forbidden_address("fd00:ec2::253")
    assert not forbidden_address("127.0.0.1")
    assert not forbidden_address("inventory")


def resolver_for(*addresses):
    """A getaddrinfo stand-in answering `addresses` for any name."""

    def resolve(host, port, type=0):
        infos = []
        for address in addresses:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sockaddr = (address, port, 0, 0) if family == socket.AF_INET6 else (address, port)
            infos.append((family, socket.SOCK_STREAM, 6, "", sockaddr))
        return infos

    return resolve


def test_call_time_check_refuses_names_resolving_to_metadata():
    resolve = resolver_for("10.0.0.7", "169.254.169.254")
    problem = resolved_url_problem("http://inventory.example/x", [], resolve)
    assert problem == "host inventory.example resolves to a link-local or metadata address"


def test_call_time_check_refuses_ipv4_mapped_resolution():
    resolve = resolver_for("::ffff:169.254.169.254")
    assert resolved_url_problem("http://inventory/x", [], resolve) is not None


def test_call_time_check_passes_ordinary_addresses():
    resolve = resolver_for("10.0.0.7", "fd12::7")
    assert resolved_url_problem("http://inventory/x", ["inventory"], resolve) is None


def test_call_time_check_still_applies_the_static_rules():
    resolve = resolver_for("10.0.0.7")
    assert "SAGA_ALLOWED_HOSTS" in resolved_url_problem("http://other/x", ["inventory"], resolve)


def test_unresolvable_host_is_left_to_the_call():
    def resolve(*args, **kwargs):
        raise socket.gaierror("no such host")

    assert resolved_url_problem("http://nowhere.invalid/", [], resolve) is None


def test_call_time_check_with_the_real_resolver():
    assert resolved_url_problem("http://localhost:1/", ["localhost"]) is None
    assert resolved_url_problem("http://169.254.169.254/", []) is not None


@pytest.mark.parametrize(
    ("location", "base", "allowed"),
    [
        ("http://inventory/next", "http://inventory/a", True),
        ("/relative/path", "http://inventory/a", True),
        ("other", "http://a.svc.local/x/y", True),
        ("http://evil.example/", "http://inventory/a", False),
        ("http://169.254.169.254/latest", "http://inventory/a", False),
        ("//169.254.169.254/", "http://inventory/a", False),
        ("http://[::ffff:169.254.169.254]/", "http://inventory/a", False),
        ("file:///etc/passwd", "http://inventory/a", False),
        ("http://inventory/a", "https://inventory/a", False),  # downgrade
        ("https://inventory/b", "http://inventory/a", True),
        ("", "http://inventory/a", False),
        ("http://inventory/\r\nX: 1", "http://inventory/a", False),
    ],
)
def test_redirect_policy(location, base, allowed):
    patterns = ["inventory", "*.svc.local"]
    assert redirect_allowed(location, patterns, base_url=base) is allowed


def test_redirect_without_allow_list_still_refuses_metadata():
    assert redirect_allowed("http://anything.example/", [])
    assert not redirect_allowed("http://0xa9fea9fe/", [])


def test_forbidden_networks_cover_the_whole_link_local_range():
    for address in ("169.254.0.0", "169.254.255.255", "fe80::", "febf::ffff"):
        url = f"http://[{address}]/" if ":" in address else f"http://{address}/"
        assert url_problem(url, []) is not None, address
    assert ipaddress.ip_address("169.255.0.1")  # just outside
    assert url_problem("http://169.255.0.1/", []) is None
