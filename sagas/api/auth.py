"""API keys and roles (DESIGN §3): SAGA_API_KEY is a client, INTERNAL_API_KEY internal.

No key → 401; unknown key → 401; known key without the role → 403. Keys are compared in
constant time and never logged.
"""

import hashlib
import hmac
from dataclasses import dataclass

from django.conf import settings
from rest_framework import authentication, exceptions, permissions

CLIENT = "client"
INTERNAL = "internal"
HEADER = "X-API-Key"


@dataclass(frozen=True)
class ApiPrincipal:
    role: str
    # Names the key in history and console sessions without revealing it (key_id()).
    key_id: str = ""

    is_authenticated = True

    @property
    def is_internal(self) -> bool:
        return self.role == INTERNAL


def _digest(value: str) -> bytes:
    # Fixed-length digests: compare_digest's time then depends on neither key's length.
    return hashlib.sha256(value.encode("utf-8", "replace")).digest()


def key_id(key: str) -> str:
    """The first 8 hex characters of an HMAC-SHA256 of the key under SECRET_KEY: tells
    which key acted, and cannot be turned back into the key (DESIGN §9.2)."""
    mac = hmac.new(settings.SECRET_KEY.encode(), key.encode("utf-8", "replace"), hashlib.sha256)
    return mac.hexdigest()[:8]


def role_for_key(key: str) -> str | None:
    """The role a key grants, or None. Every configured key is compared, each in constant
    time, whatever matched before: the answer's timing tells nothing about the keys."""
    supplied = _digest(key)
    role = None
    for candidate, candidate_role in (
        (settings.INTERNAL_API_KEY, INTERNAL),
        (settings.SAGA_API_KEY, CLIENT),
    ):
        matches = hmac.compare_digest(supplied, _digest(candidate))
        if matches and candidate and role is None:
            role = candidate_role
    return role


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        key = request.headers.get(HEADER)
        if key is None:
            return None
        role = role_for_key(key)
        if role is None:
            raise exceptions.AuthenticationFailed("Unknown API key.")
        return ApiPrincipal(role, key_id(key)), None

    def authenticate_header(self, request) -> str:
        # Makes DRF answer 401 (not 403) when the key is missing.
        return HEADER


class IsClient(permissions.BasePermission):
    """Any valid key: clients and internal callers."""

    message = "A valid X-API-Key is required."

    def has_permission(self, request, view) -> bool:
        return isinstance(request.user, ApiPrincipal)


class IsInternal(permissions.BasePermission):
    message = "This operation needs the internal API key."

    def has_permission(self, request, view) -> bool:
        if not isinstance(request.user, ApiPrincipal):
            raise exceptions.NotAuthenticated()
        return request.user.is_internal
