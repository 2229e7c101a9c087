"""Which participant URLs may be called (SSRF guard). Pure.

Checked when a definition is stored and again at call time, after templates resolve.
"""

import ipaddress
from urllib.parse import urlsplit

# Cloud metadata and link-local addresses are never participants.
FORBIDDEN_NETWORKS = (
    ipaddress.ip_network("169.254.0.0/16"),
    ipaddress.ip_network("fe80::/10"),
    ipaddress.ip_network("fd00:ec2::254/128"),
)


def host_matches(host: str, patterns: list[str]) -> bool:
    """`host` equals a pattern, or ends with a `*.suffix` pattern's suffix."""
    host = host.lower().rstrip(".")
    for pattern in patterns:
        pattern = pattern.lower().rstrip(".")
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and host != pattern[2:]:
                return True
        elif host == pattern:
            return True
    return False


def forbidden_address(host: str) -> bool:
    """True for an IP literal in a forbidden network (metadata, link-local)."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    if getattr(address, "ipv4_mapped", None):
        address = address.ipv4_mapped
    return any(address in network for network in FORBIDDEN_NETWORKS)


def url_problem(url: str, allowed_hosts: list[str]) -> str | None:
    """Why `url` may not be called, or None. `allowed_hosts` empty means any host."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("http", "https"):
        return "must use http or https"
    if not host:
        return "has no host"
    if parts.username or parts.password:
        return "must not carry credentials"
    if forbidden_address(host):
        return f"host {host} is a link-local or metadata address"
    if allowed_hosts and not host_matches(host, allowed_hosts):
        return f"host {host} is not in SAGA_ALLOWED_HOSTS"
    return None
