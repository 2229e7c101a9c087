"""WSGI entry point for Gunicorn: `gunicorn -c gunicorn.conf.py saga_orchestrator.wsgi`."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "saga_orchestrator.settings")

application = get_wsgi_application()

# Refuse to serve with unset secrets (DEBUG=False); the message names the variable.
from saga_orchestrator.secrets import require_production_secrets  # noqa: E402

require_production_secrets()
