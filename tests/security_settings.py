"""The real settings with the security tests' URLconf, for Gunicorn subprocesses."""

from saga_orchestrator.settings import *  # noqa: F403

ROOT_URLCONF = "tests.security_urls"

# Which worker process answered (the e2e tests check several did).
MIDDLEWARE = [*MIDDLEWARE, "tests.security_urls.WorkerPidMiddleware"]  # noqa: F405
