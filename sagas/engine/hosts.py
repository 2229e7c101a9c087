"""Which participant URLs may be called (SSRF guard).

`url_problem` is pure and runs when a definition is stored and again at call time after
templates resolve. `resolved_url_problem` adds the call-time DNS check (any resolved address
forbidden → refused), and `redirect_allowed` decides whether a redirect may be followed.

Rules:
- http or https only, a host, no credentials, no whitespace or control characters.
- Link-local and cloud metadata addresses are always refused, in every spelling: IPv6
  literals, IPv4-mapped/compatible, 6to4 and NAT64 forms, and the inet_aton spellings
  (decimal `2852039166`, octal `0251.0376.0251.0376`, hex `0xa9fea9fe`, short `169.254.43518`).
  Those numeric spellings are refused whatever they decode to: no real participant needs them.
- With SAGA_ALLOWED_HOSTS set, the host must equal one entry or match a `*.suffix` entry
  (`*.svc.local` matches `a.svc.local`, not `svc.local`). Empty means any host.
Loopback and private addresses are allowed: participants are usually internal services.
"""

import ipaddress
import re
import socket
from collections.abc import Callable
from urllib.parse import urljoin, urlsplit

MAX_URL_LENGTH = 4096

# Cloud metadata and link-local addresses are never participants.
FORBIDDEN_NETWORKS = (
    ipaddress.ip_network("169.254.0.0/16"),  # link-local; AWS/GCP/Azure metadata
    ipaddress.ip_network("fe80::/10"),  # IPv6 link-local
    ipaddress.ip_network("fd00:ec2::254/128"),  # AWS metadata over IPv6
    ipaddress.ip_network("100.100.100.200/32"),  # Alibaba Cloud metadata
)
NAT64 = ipaddress.ip_network("64:ff9b::/96")
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")

# Labels of letters, digits, `-` and `_` (Docker service names use `_`).
HOSTNAME = re.compile(r"^(?=.{1,253}$)[a-z0-9_][a-z0-9_-]{0,62}(\.[a-z0-9_-]{1,63})*$")
NUMERIC_PART = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def normal_host(host: str) -> str:
    """Lower case, no brackets or trailing dot, IDNA (punycode) for non-ASCII names."""
    host = host.strip().strip("[]").rstrip(".").lower()
    if host.isascii():
        return host
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return host


def ip_literal(host: str) -> IpAddress | None:
    """The address when `host` is a canonical IPv4 or IPv6 literal (zone ids allowed)."""
    try:
        return ipaddress.ip_address(normal_host(host))
    except ValueError:
        return None


def loose_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The address a resolver's inet_aton would read in a numeric host: 1 to 4 parts, each
    decimal, octal (leading 0) or hex (0x), the last filling the remaining bytes."""
    parts = normal_host(host).split(".")
    if not 1 <= len(parts) <= 4 or not all(NUMERIC_PART.match(part) for part in parts):
        return None
    try:
        numbers = [_inet_aton_number(part) for part in parts]
    except ValueError:
        return None
    *leading, last = numbers
    if any(n > 255 for n in leading) or last >= 256 ** (5 - len(numbers)):
        return None
    value = 0
    for n in leading:
        value = value * 256 + n
    value = value * 256 ** (5 - len(numbers)) + last
    return ipaddress.IPv4Address(value)


def _inet_aton_number(part: str) -> int:
    if part.startswith("0x"):
        return int(part[2:] or "0", 16)
    if len(part) > 1 and part.startswith("0"):
        return int(part, 8)
    return int(part)


def embedded_ipv4(address: IpAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, 6to4, NAT64)."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped:
        return address.ipv4_mapped
    if address.sixtofour:
        return address.sixtofour
    if address in NAT64 or (address in IPV4_COMPATIBLE and int(address) > 0xFFFF):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def forbidden_ip(address: IpAddress) -> bool:
    """In a forbidden network, directly or through an embedded IPv4 address."""
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        address = ipaddress.IPv6Address(str(address).split("%", 1)[0])
    candidates = [address, embedded_ipv4(address)]
    return any(
        a is not None and a.version == net.version and a in net
        for a in candidates
        for net in FORBIDDEN_NETWORKS
    )


def forbidden_address(host: str) -> bool:
    """True for a host that is, in any spelling, a forbidden (metadata, link-local) address."""
    address = ip_literal(host) or loose_ipv4(host)
    return address is not None and forbidden_ip(address)


def host_matches(host: str, patterns: list[str]) -> bool:
    """`host` equals a pattern, or ends with a `*.suffix` pattern's suffix."""
    host = normal_host(host)
    address = ip_literal(host)
    for pattern in patterns:
        pattern = normal_host(pattern)
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and address is None:
                return True
        elif host == pattern or (address is not None and address == ip_literal(pattern)):
            return True
    return False


def host_problem(host: str) -> str | None:
    """Why a URL's host may never be called, whatever SAGA_ALLOWED_HOSTS says."""
    if forbidden_address(host):
        return f"host {host} is a link-local or metadata address"
    if ip_literal(host) is not None:
        return None
    numeric = loose_ipv4(host)
    if numeric is not None:
        return f"host {host} is a non-standard spelling of {numeric}; write the address"
    if not HOSTNAME.match(normal_host(host)):
        return f"host {host!r} is not a valid host name"
    return None


def url_problem(url: str, allowed_hosts: list[str]) -> str | None:
    """Why `url` may not be called, or None. `allowed_hosts` empty means any host."""
    if not isinstance(url, str):
        return "must be a string"
    if len(url) > MAX_URL_LENGTH:
        return f"is longer than {MAX_URL_LENGTH} characters"
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        return "must not contain whitespace or control characters"
    if "\\" in url:
        return "must not contain a backslash"  # parsers disagree on what it separates
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("http", "https"):
        return "must use http or https"
    if not host:
        return "has no host"
    if port == 0:
        return "has port 0"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials"
    problem = host_problem(host)
    if problem:
        return problem
    if allowed_hosts and not host_matches(host, allowed_hosts):
        return f"host {host} is not in SAGA_ALLOWED_HOSTS"
    return None


Resolver = Callable[..., list]


def resolved_addresses(host: str, port: int, resolve: Resolver = socket.getaddrinfo) -> list:
    """Every address `host` resolves to now (empty when it does not resolve)."""
    try:
        infos = resolve(normal_host(host), port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    addresses = []
    for *_, sockaddr in infos:
        try:
            addresses.append(ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0]))
        except ValueError:
            continue
    return addresses


def resolved_url_problem(
    url: str, allowed_hosts: list[str], resolve: Resolver = socket.getaddrinfo
) -> str | None:
    """The call-time check: `url_problem`, then refuse when any address the host resolves
    to is forbidden (a name pointing at 169.254.169.254 is the metadata service too).

    A host that does not resolve is not a problem here: the call fails as a connection
    error and is retried like one.
    """
    problem = url_problem(url, allowed_hosts)
    if problem:
        return problem
    parts = urlsplit(url)
    if ip_literal(parts.hostname or "") is not None:
        return None  # an address: url_problem judged it already, nothing to resolve
    port = parts.port or (443 if parts.scheme == "https" else 80)
    for address in resolved_addresses(parts.hostname or "", port, resolve):
        if forbidden_ip(address):
            return f"host {parts.hostname} resolves to a link-local or metadata address"
    return None


def redirect_target(location: str, base_url: str = "") -> str:
    """The absolute URL a `Location` header points to (relative ones against `base_url`)."""
    return urljoin(base_url, location.strip()) if base_url else location.strip()


def redirect_allowed(location: str, allowed_hosts: list[str], base_url: str = "") -> bool:
    """May a redirect to `location` (from `base_url`) be followed? Only to a URL that passes
    `url_problem`, and never from https down to http. Pure: the caller must still run
    `resolved_url_problem` on the target before connecting, like on any URL."""
    if not isinstance(location, str) or not location.strip():
        return False
    target = redirect_target(location, base_url)
    if url_problem(target, allowed_hosts):
        return False
    downgrade = base_url.lower().startswith("https:") and urlsplit(target).scheme == "http"
    return not downgrade
