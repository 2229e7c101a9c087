from django.apps import AppConfig


class SagasConfig(AppConfig):
    name = "sagas"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from sagas import checks  # noqa: F401  (registers the deploy checks)
        from sagas.engine import store
        from sagas.observability.metrics import saga_event_record

        # Saga events (calls, finishes) counted in Prometheus, in every process.
        if saga_event_record not in store.EVENT_LISTENERS:
            store.EVENT_LISTENERS.append(saga_event_record)
