"""Response shapes of the health endpoints (for the OpenAPI schema)."""

from rest_framework import serializers


class LiveSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ok"])


class CheckSerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=["ok", "degraded", "down", "disabled", "unknown"],
        help_text="redis: `disabled` when REDIS_HOST is not set, `degraded` when it answers "
        "but refuses writes (e.g. a read-only replica: requests pass the rate limit "
        "uncounted); "
        "workers: `unknown` when the database is down.",
    )
    latency_ms = serializers.FloatField(allow_null=True)


class WorkersCheckSerializer(CheckSerializer):
    alive = serializers.IntegerField(allow_null=True)


class ChecksSerializer(serializers.Serializer):
    database = CheckSerializer()
    redis = CheckSerializer()
    workers = WorkersCheckSerializer()


class HealthSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ok", "degraded", "down"])
    checks = ChecksSerializer()
