"""Console sign-in: an API key is exchanged for a server-side session (the database's
session table) holding the role and the key's `key_id`, never the key itself.

A session stays valid only while its key does: each request compares its `key_id` with
those of the keys configured now, so rotating a key signs its sessions out.
"""

import logging

from django.conf import settings

from sagas.api.auth import CLIENT, INTERNAL, key_id, role_for_key

logger = logging.getLogger("sagas.console")

ROLE = "console_role"
KEY_ID = "console_key_id"
NOTICE = "console_notice"
# What each role may do to a saga (DESIGN §3, §9.2): the console offers and accepts these.
ACTIONS = {
    CLIENT: ("cancel",),
    INTERNAL: ("cancel", "retry", "pause", "resume"),
}


def sign_in(request, key: str) -> bool:
    """Start a session for `key`; False (and nothing stored) when it is not a valid key."""
    role = role_for_key(key)
    if role is None:
        logger.warning("console sign-in refused", extra={"event": "console_sign_in_refused"})
        return False
    request.session.cycle_key()  # a new session id: nothing from before sign-in carries over
    request.session[ROLE] = role
    request.session[KEY_ID] = key_id(key)
    logger.info(
        "console sign-in",
        extra={"event": "console_sign_in", "role": role, "key_id": request.session[KEY_ID]},
    )
    return True


def sign_out(request) -> None:
    request.session.flush()


def role(request) -> str | None:
    """The role of a signed-in session whose key is still configured; else None."""
    if not hasattr(request, "session"):
        return None
    stored, stored_id = request.session.get(ROLE), request.session.get(KEY_ID)
    if stored is None or stored_id != _current_key_id(stored):
        return None
    return stored


def signed_in(request) -> bool:
    return role(request) is not None


def _current_key_id(stored_role: str) -> str | None:
    key = {CLIENT: settings.SAGA_API_KEY, INTERNAL: settings.INTERNAL_API_KEY}.get(stored_role)
    return key_id(key) if key else None


def may(request, action: str) -> bool:
    return action in ACTIONS.get(role(request) or "", ())


def notice_set(request, text: str) -> None:
    """A one-line message shown once on the next page (after a redirect)."""
    request.session[NOTICE] = text


def notice_pop(request) -> str | None:
    return request.session.pop(NOTICE, None) if hasattr(request, "session") else None
