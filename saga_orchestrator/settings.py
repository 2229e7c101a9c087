"""Settings, all from the environment (docs/configuration.md lists every variable).

With no DB_HOST the service runs on a SQLite file, with no REDIS_HOST on in-process
counters and locks: `make run` works on a fresh machine with no servers.
"""

import ipaddress
import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from saga_orchestrator.logging import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_int(name: str, default: int, minimum: int | None = None) -> int:
    raw = env_str(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    return value


def env_float(name: str, default: float, minimum: float = 0.0) -> float:
    raw = env_str(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    return value


def env_bool(name: str, default: bool) -> bool:
    raw = env_str(name).lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, got {raw!r}")


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


# The guide's placeholders: a deployment still carrying one of them is not configured.
PLACEHOLDER_SECRETS = {
    "your-super-secret-key-change-in-production",
    "your-saga-api-key",
    "your-internal-api-key",
    "your-webhook-secret",
}
# Used only with DEBUG=True (make run), printed at start-up so the README's curls work. The
# webhook secret is never a default (DESIGN §9.5: unset refuses `notify`): make run sets it.
DEV_SECRETS = {
    "SECRET_KEY": "dev-insecure-secret-key-do-not-use-in-production",
    "SAGA_API_KEY": "dev-saga-key",
    "INTERNAL_API_KEY": "dev-internal-key",
    "SAGA_WEBHOOK_SECRET": "dev-webhook-secret",
}

DEBUG = env_bool("DEBUG", False)


def env_secret(name: str) -> str:
    """A secret; with DEBUG a missing one falls back to the development value."""
    value = env_str(name)
    if not value and DEBUG:
        return DEV_SECRETS[name]
    return value


SECRET_KEY = env_secret("SECRET_KEY")
SAGA_API_KEY = env_secret("SAGA_API_KEY")
INTERNAL_API_KEY = env_secret("INTERNAL_API_KEY")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "*")
# Behind a TLS-terminating proxy: SECURE_PROXY_SSL_HEADER=X-Forwarded-Proto (docs/security.md).
_proxy_ssl_header = env_str("SECURE_PROXY_SSL_HEADER")
if _proxy_ssl_header:
    SECURE_PROXY_SSL_HEADER = (
        "HTTP_" + _proxy_ssl_header.upper().replace("-", "_"),
        "https",
    )
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
# Health checks and scrapes come over plain HTTP from inside the network: never redirected.
SECURE_REDIRECT_EXEMPT = [r"^health/", r"^metrics$"]
# security.W003 (no CsrfViewMiddleware): the API authenticates by the X-API-Key header, a
# header a cross-site form cannot set; the console's views are each csrf_protect-ed.
SILENCED_SYSTEM_CHECKS = ["security.W003"]
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Comma-separated proxy addresses whose X-Forwarded-For is believed for the client IP.
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES")
for _proxy in TRUSTED_PROXIES:
    try:
        ipaddress.ip_network(_proxy, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"TRUSTED_PROXIES: {_proxy!r} is not an IP address or network"
        ) from None

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "sagas",
    "health",
    "console",
]

MIDDLEWARE = [
    "sagas.api.middleware.RequestIdMiddleware",
    "sagas.observability.metrics.RequestMetricsMiddleware",
    # Outside the middleware that may fail (DisallowedHost in Common/Security), so even
    # their error pages become JSON.
    "sagas.api.middleware.JsonErrorMiddleware",
    # Before anything that may fail: Django's error views read the CSRF token from the
    # session (CSRF_USE_SESSIONS). Lazy: a request without the console's cookie (it is
    # scoped to /console/) never touches the session table.
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.middleware.common.CommonMiddleware",
    # The console's rate limit and headers (its views check CSRF themselves).
    "console.middleware.ConsoleMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "sagas.api.throttling.RateLimitHeadersMiddleware",
]

ROOT_URLCONF = "saga_orchestrator.urls"
WSGI_APPLICATION = "saga_orchestrator.wsgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    },
]

# Database: PostgreSQL when DB_HOST is set, else a SQLite file (embedded default).
DB_HOST = env_str("DB_HOST")
DB_CONN_MAX_AGE = env_int("DB_CONN_MAX_AGE", 60, minimum=0)
DB_CONNECT_TIMEOUT = env_int("DB_CONNECT_TIMEOUT", 20, minimum=1)


def env_file(name: str) -> str:
    """A path that must name a readable file when set (a typo fails at start-up, not as
    a TLS error at the first connection)."""
    path = env_str(name)
    if path and not os.access(path, os.R_OK):
        raise ImproperlyConfigured(f"{name}: {path!r} is not a readable file")
    return path


# libpq's sslmode values; only verify-full checks both the certificate and the host name.
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def db_ssl_options() -> dict:
    """libpq's sslmode and sslrootcert, passed to every PostgreSQL connection (Django's,
    the workers' LISTEN connection, the health probe). Unset: libpq's defaults."""
    options = {}
    sslmode = env_str("DB_SSLMODE")
    if sslmode:
        if sslmode not in SSL_MODES:
            raise ImproperlyConfigured(
                f"DB_SSLMODE must be one of {', '.join(SSL_MODES)}, got {sslmode!r}"
            )
        options["sslmode"] = sslmode
    root_cert = env_file("DB_SSLROOTCERT")
    if root_cert:
        options["sslrootcert"] = root_cert
    return options


DB_SSL_OPTIONS = db_ssl_options() if DB_HOST else {}
if DB_HOST:
    DATABASES = {
        "default": {
            # Django's backend with a cheaper health check (saga_orchestrator/postgresql).
            "ENGINE": "saga_orchestrator.postgresql",
            "NAME": env_str("DB_NAME", "saga_db"),
            "USER": env_str("DB_USER", "postgres"),
            "PASSWORD": env_str("DB_PASSWORD"),
            "HOST": DB_HOST,
            "PORT": env_int("DB_PORT", 5432),
            "CONN_MAX_AGE": DB_CONN_MAX_AGE,
            "CONN_HEALTH_CHECKS": True,
            "OPTIONS": {"connect_timeout": DB_CONNECT_TIMEOUT, **DB_SSL_OPTIONS},
        }
    }
else:
    SQLITE_PATH = Path(env_str("SQLITE_PATH", str(BASE_DIR / "data" / "saga.sqlite3")))
    SQLITE_PATH.parent.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(SQLITE_PATH),
            "OPTIONS": {
                "timeout": DB_CONNECT_TIMEOUT,
                # WAL lets the API read while the worker writes; IMMEDIATE avoids
                # deadlocking upgrades from read to write locks.
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Redis: the rate-limit counters, the request figures, the engine's per-saga locks, the
# health probe — every user through one client factory (sagas/redis_client.py), so one
# configuration. Optional: without REDIS_HOST each user has an in-process fallback.
REDIS_HOST = env_str("REDIS_HOST")
REDIS_PORT = env_int("REDIS_PORT", 6379)
REDIS_PASSWORD = env_str("REDIS_PASSWORD")
REDIS_DB = env_int("REDIS_DB", 0, minimum=0)
REDIS_SOCKET_TIMEOUT = env_float("REDIS_SOCKET_TIMEOUT", 0.5)
# TLS to Redis: the server's certificate and host name are always verified, against
# REDIS_SSL_CA_CERTS or else the system's CAs (docs/security.md).
REDIS_SSL = env_bool("REDIS_SSL", False)
REDIS_SSL_CA_CERTS = env_file("REDIS_SSL_CA_CERTS")
if REDIS_SSL_CA_CERTS and not REDIS_SSL:
    raise ImproperlyConfigured("REDIS_SSL_CA_CERTS is set but REDIS_SSL is not true")
# Nothing uses Django's cache framework (DRF's throttle is replaced, sessions are in the
# database):
# the in-process default, stated so that no one points it at a second Redis configuration.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# KAFKA_BOOTSTRAP_SERVERS (the deployment guide's, optional) is deliberately not read: there
# is no event bus client; webhooks are the event channel (docs/configuration.md).

# The console (console/, docs/security.md): a session row in the database holds the role
# and key_id (never the key); the cookie holds only the session id; the CSRF token lives in
# the session, so that is the only cookie.
SESSION_ENGINE = "django.contrib.sessions.backends.db"
SESSION_COOKIE_NAME = "saga_console"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Strict"
SESSION_COOKIE_PATH = "/console/"
SESSION_COOKIE_AGE = 12 * 3600
CSRF_USE_SESSIONS = True
CSRF_FAILURE_VIEW = "console.views.csrf_failure"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve the docs assets straight from the installed packages when collectstatic has
# not run (make run, tests); production images run collectstatic at build time.
WHITENOISE_USE_FINDERS = True

# Saga engine.
SAGA_TIMEOUT = env_float("SAGA_TIMEOUT", 300.0, minimum=0.001)
SAGA_RETRY_ATTEMPTS = env_int("SAGA_RETRY_ATTEMPTS", 3, minimum=1)
SAGA_RETRY_DELAY = env_float("SAGA_RETRY_DELAY", 5.0)
SAGA_COMPENSATION_RETRY_ATTEMPTS = env_int("SAGA_COMPENSATION_RETRY_ATTEMPTS", 10, minimum=1)
SAGA_LEASE_SECONDS = env_float("SAGA_LEASE_SECONDS", 30.0, minimum=1.0)
# Calls a step may lose to a worker's death (per phase) before one counts as an attempt.
SAGA_MAX_INTERRUPTIONS = env_int("SAGA_MAX_INTERRUPTIONS", 3, minimum=0)
SAGA_ALLOWED_HOSTS = env_list("SAGA_ALLOWED_HOSTS")
SAGA_MAX_INPUT_BYTES = env_int("SAGA_MAX_INPUT_BYTES", 256 * 1024, minimum=1)
SAGA_MAX_RESPONSE_BYTES = env_int("SAGA_MAX_RESPONSE_BYTES", 1024 * 1024, minimum=1)
# `/logs/` (DESIGN §9.6): each body kept up to this many bytes (0: none); header values of
# these names stored as "***", besides Authorization, Cookie, X-API-Key, X-Saga-Callback-Token.
SAGA_LOG_BODY_BYTES = env_int("SAGA_LOG_BODY_BYTES", 4096, minimum=0)
SAGA_REDACT_HEADERS = env_list("SAGA_REDACT_HEADERS")
# Bound of every other JSON request body (sagas.api.parsers); never below the saga input bound,
# so Django's own check cannot turn a start request into a 400 before the API's 413.
DATA_UPLOAD_MAX_MEMORY_SIZE = max(2621440, SAGA_MAX_INPUT_BYTES)
SAGA_RETENTION_DAYS = env_int("SAGA_RETENTION_DAYS", 30, minimum=1)
# PostgreSQL wakes workers with NOTIFY (polling is the safety net); SQLite has only polling.
SAGA_WORKER_POLL_SECONDS = env_float(
    "SAGA_WORKER_POLL_SECONDS", 1.0 if DB_HOST else 0.1, minimum=0.01
)
SAGA_WORKER_HEARTBEAT_SECONDS = env_float("SAGA_WORKER_HEARTBEAT_SECONDS", 10.0, minimum=0.1)
# Default call timeout of a step (the definition may override per call).
SAGA_CALL_TIMEOUT = 30.0
# The base participants reach the service at: asynchronous steps' callback URLs (§9.4).
SAGA_PUBLIC_URL = env_str("SAGA_PUBLIC_URL", "http://127.0.0.1:8008").rstrip("/")
if not SAGA_PUBLIC_URL.lower().startswith(("http://", "https://")):
    raise ImproperlyConfigured(f"SAGA_PUBLIC_URL must be an http(s) URL, got {SAGA_PUBLIC_URL!r}")
# Lifecycle webhooks (DESIGN §9.5): the signing key (a definition with `notify` is refused
# while it is empty or a placeholder), the first retry delay (doubling up to an hour) and
# the deliveries of one event in all before it is `dead`.
SAGA_WEBHOOK_SECRET = env_str("SAGA_WEBHOOK_SECRET")
SAGA_WEBHOOK_RETRY_DELAY = env_float("SAGA_WEBHOOK_RETRY_DELAY", 5.0)
SAGA_WEBHOOK_MAX_ATTEMPTS = env_int("SAGA_WEBHOOK_MAX_ATTEMPTS", 20, minimum=1)

RATE_LIMIT_MAX_REQUESTS = env_int("RATE_LIMIT_MAX_REQUESTS", 100, minimum=1)
RATE_LIMIT_WINDOW = env_int("RATE_LIMIT_WINDOW", 60, minimum=1)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["sagas.api.auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["sagas.api.auth.IsClient"],
    # Open views (no authentication classes) are exempt; see sagas/api/throttling.py.
    "DEFAULT_THROTTLE_CLASSES": ["sagas.api.throttling.ApiRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["sagas.api.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "sagas.api.pagination.Pagination",
    "EXCEPTION_HANDLER": "sagas.api.exceptions.exception_handler",
    "UNAUTHENTICATED_USER": None,
    "PAGE_SIZE": 50,
    # Errors of list items as {"<index>": {...}} for the failing items only (DRF 3.20 default).
    "LIST_SERIALIZER_ERRORS_AS_DICT": True,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Saga Orchestrator API",
    "DESCRIPTION": (
        "Coordinates distributed transactions as sagas: register definitions of ordered "
        "HTTP steps with compensations, start sagas, follow their steps and call logs. "
        "Authenticate with the `X-API-Key` header."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_SETTINGS": {"persistAuthorization": True, "displayRequestDuration": True},
    # 401/429/503 on every authenticated operation, 404 on paginated lists.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "sagas.api.schema.common_responses",
    ],
    # Several "status" fields with different choices: name each enum.
    "ENUM_NAME_OVERRIDES": {
        "SagaStatusEnum": "sagas.models.SagaStatus",
        "StepPhaseEnum": "sagas.models.Phase",
        "ServiceStatusEnum": ["ok", "degraded"],
        "HealthStatusEnum": ["ok", "degraded", "down"],
        "CheckStatusEnum": ["ok", "degraded", "down", "disabled", "unknown"],
        "LiveStatusEnum": ["ok"],
    },
}

LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
LOG_FILE = env_str("LOG_FILE", str(BASE_DIR / "logs" / "saga_orchestrator.log"))
LOGGING = logging_config(LOG_LEVEL, LOG_FILE)
