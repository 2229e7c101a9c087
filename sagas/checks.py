"""`manage.py check --deploy` refuses empty or placeholder secrets (DESIGN §6)."""

from django.conf import settings
from django.core import checks

from saga_orchestrator.secrets import secret_problems


@checks.register(checks.Tags.security, deploy=True)
def secrets_configured(app_configs, **kwargs):
    if settings.DEBUG:
        return []
    return [checks.Error(problem, id="sagas.E001") for problem in secret_problems()]
