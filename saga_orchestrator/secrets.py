"""The start-up refusal of unset secrets with DEBUG=False (DESIGN §6).

Gunicorn (wsgi.py), the worker and `check --deploy` refuse to run; `migrate` and
`collectstatic` do not call this, so images build without secrets.
"""

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

SECRET_NAMES = ("SECRET_KEY", "SAGA_API_KEY", "INTERNAL_API_KEY")


def secret_problems() -> list[str]:
    """One message per secret that is empty or still a placeholder, naming the variable."""
    problems = []
    for name in SECRET_NAMES:
        value = _setting(name)
        if not value:
            problems.append(f"{name} is empty: set it in the environment")
        elif value in settings.PLACEHOLDER_SECRETS or value == settings.DEV_SECRETS[name]:
            problems.append(f"{name} is still a placeholder: set a real secret")
    if settings.SAGA_API_KEY and settings.SAGA_API_KEY == settings.INTERNAL_API_KEY:
        problems.append("SAGA_API_KEY and INTERNAL_API_KEY must differ")
    return problems


def _setting(name: str) -> str:
    try:
        return getattr(settings, name)
    except ImproperlyConfigured:
        return ""  # Django refuses to hand out an empty SECRET_KEY at all


def webhook_secret_problem() -> str | None:
    """Why webhooks cannot be signed (DESIGN §9.5), naming SAGA_WEBHOOK_SECRET; None when
    the secret is set. Checked when a definition with `notify` is posted and before each
    delivery (nothing is sent unsigned). The public development secret signs only with
    DEBUG=True (make run), like the development keys."""
    value = settings.SAGA_WEBHOOK_SECRET
    if not value:
        return "SAGA_WEBHOOK_SECRET is empty: set it to sign webhooks"
    public = set(settings.DEV_SECRETS.values())
    if settings.DEBUG:
        public.discard(settings.DEV_SECRETS["SAGA_WEBHOOK_SECRET"])
    if value in settings.PLACEHOLDER_SECRETS or value in public:
        return "SAGA_WEBHOOK_SECRET is still a placeholder: set a real secret to sign webhooks"
    return None


def require_production_secrets() -> None:
    """Raise, naming the variables, when DEBUG is off and a secret is not set."""
    if settings.DEBUG:
        return
    problems = secret_problems()
    if problems:
        raise ImproperlyConfigured("Refusing to start: " + "; ".join(problems))
