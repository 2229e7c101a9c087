"""The real settings with the security tests' URLconf, for Gunicorn subprocesses."""

from saga_orchestrator.settings import *  # noqa: F403

ROOT_URLCONF = "tests.security_urls"
