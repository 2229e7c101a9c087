"""Request validation and response shapes of the REST API (DESIGN §3, §6a).

Input serializers are strict: unknown fields, wrong JSON types (a number where a string
belongs, a string where a number belongs) and control characters are rejected with a
field-level message rather than coerced.
"""

import copy
import functools
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from saga_orchestrator.secrets import webhook_secret_problem
from sagas.engine import hosts, templates
from sagas.engine.callbacks import OUTCOMES
from sagas.engine.headers import (
    header_name_problem,
    header_reserved_problem,
    header_value_problem,
)
from sagas.engine.plan import steps_flat
from sagas.engine.webhooks import EVENT_TYPES
from sagas.jsonutil import MAX_VALUE_DEPTH, json_value_problem
from sagas.models import (
    OnFailure,
    SagaAttempt,
    SagaInstance,
    SagaStatus,
    WebhookEvent,
    WebhookStatus,
)

NAME_RE = re.compile(r"\A[a-z0-9_-]{1,100}\Z")
NAME_MESSAGE = "Use 1 to 100 characters from a-z, 0-9, '_' and '-'."
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
MAX_STEPS = 50
# A parallel group's members (DESIGN §9.3).
MIN_MEMBERS, MAX_MEMBERS = 2, 20
MAX_HEADERS = 50
MAX_DESCRIPTION = 2000
MAX_URL = 2048
MAX_HEADER_VALUE = 4096
MAX_DEFINITION_TIMEOUT = 604800.0
MAX_CALL_TIMEOUT = 300.0
MAX_ASYNC_TIMEOUT = 604800
MAX_CALLBACK_ERROR = 2000
DEFAULT_BACKOFF = 2.0
DEFAULT_MAX_DELAY = 60.0
# What an action that fails for good does (DESIGN §9.2): undo the saga, or wait for an operator.
MAX_REASON = 500
# Stands in for a placeholder when a templated URL is checked statically.
DUMMY_SEGMENT = "x"


def is_control_char(char: str) -> bool:
    return ord(char) < 32 or 127 <= ord(char) < 160


# Fields that take JSON types as they are -------------------------------------------------


class StrictCharField(serializers.CharField):
    """A JSON string (numbers are not turned into strings); control characters refused
    except those in `controls_ok`. Whitespace is kept as sent."""

    default_error_messages = {
        "not_string": "Must be a string.",
        "control": "Must not contain control characters.",
    }

    def __init__(self, *, controls_ok: str = "", **kwargs):
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)
        self.controls_ok = controls_ok

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("not_string")
        value = super().to_internal_value(data)
        if any(is_control_char(char) and char not in self.controls_ok for char in value):
            self.fail("control")
        return value


class NameField(StrictCharField):
    def __init__(self, **kwargs):
        super().__init__(max_length=100, **kwargs)
        self.validators.append(_name_validator)


def _name_validator(value: str) -> None:
    if not NAME_RE.match(value):
        raise serializers.ValidationError(NAME_MESSAGE)


class NumberField(serializers.FloatField):
    """A JSON number (fractions allowed); `above` is an exclusive lower bound."""

    default_error_messages = {
        "not_number": "Must be a number.",
        "not_above": "Must be greater than {minimum}.",
    }

    def __init__(self, *, above: float | None = None, **kwargs):
        super().__init__(**kwargs)
        self.above = above

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            self.fail("not_number")
        value = super().to_internal_value(data)
        if self.above is not None and not value > self.above:
            self.fail("not_above", minimum=self.above)
        return value


class WholeNumberField(serializers.IntegerField):
    default_error_messages = {"not_integer": "Must be an integer."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            self.fail("not_integer")
        return super().to_internal_value(data)


class JsonValueField(serializers.JSONField):
    """Any JSON value PostgreSQL can store, nested at most MAX_VALUE_DEPTH levels."""

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        problem = json_value_problem(value, MAX_VALUE_DEPTH)
        if problem:
            raise serializers.ValidationError(problem)
        return value


@extend_schema_field({"type": "object", "additionalProperties": True})
class JsonObjectField(JsonValueField):
    default_error_messages = {"not_object": "Must be a JSON object."}

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            self.fail("not_object")
        return super().to_internal_value(data)


class StrictSerializer(serializers.Serializer):
    """Rejects fields it does not know, reported together with the other field errors."""

    def to_internal_value(self, data):
        unknown = {}
        if isinstance(data, Mapping):
            unknown = {str(key): ["Unknown field."] for key in data if key not in self.fields}
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            detail = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc}
            raise serializers.ValidationError({**detail, **unknown})
        if unknown:
            raise serializers.ValidationError(unknown)
        return value


# Saga definitions ----------------------------------------------------------------------


def url_static_problem(url: str) -> str | None:
    """What is wrong with a (possibly templated) URL that can be known before it runs.

    The scheme must be literal; the host is checked against SAGA_ALLOWED_HOSTS when it is
    literal too (a templated host is checked by the engine once it resolves).
    """
    if not url.lower().startswith(("http://", "https://")):
        return "Must start with http:// or https://."
    if any(char.isspace() for char in url):
        return "Must not contain whitespace."
    netloc = urlsplit(url.replace("${", "{")).netloc
    if "{" in netloc:
        return None
    static = templates.PLACEHOLDER.sub(DUMMY_SEGMENT, url)
    problem = hosts.url_problem(static, settings.SAGA_ALLOWED_HOSTS)
    return f"URL {problem}." if problem else None


class CallSerializer(StrictSerializer):
    """One HTTP call of a step: its action or its compensation."""

    method = serializers.ChoiceField(
        choices=METHODS, help_text="GET, POST, PUT, PATCH or DELETE (upper case)."
    )
    url = StrictCharField(max_length=MAX_URL, help_text="http(s) URL; may hold placeholders.")
    headers = serializers.DictField(
        child=StrictCharField(max_length=MAX_HEADER_VALUE, allow_blank=True, controls_ok="\t"),
        required=False,
        help_text="Header name → string value (placeholders allowed in values).",
    )
    body = JsonValueField(
        required=False, allow_null=True, help_text="Any JSON; placeholders allowed in strings."
    )
    timeout_seconds = NumberField(
        required=False,
        above=0,
        max_value=MAX_CALL_TIMEOUT,
        help_text="Per-call timeout in (0, 300]; default 30.",
    )

    def validate_url(self, value: str) -> str:
        problem = url_static_problem(value)
        if problem:
            raise serializers.ValidationError(problem)
        return value

    def validate_headers(self, value: dict) -> dict:
        if len(value) > MAX_HEADERS:
            raise serializers.ValidationError(f"At most {MAX_HEADERS} headers.")
        bad = [name for name in value if header_name_problem(name)]
        if bad:
            raise serializers.ValidationError(f"Invalid header name(s): {', '.join(bad)}.")
        reserved = [name for name in value if header_reserved_problem(name)]
        if reserved:
            raise serializers.ValidationError(
                f"Header(s) {', '.join(reserved)} may not be set by a definition: the "
                "orchestrator sets them (Host, Content-Length, Transfer-Encoding, Connection, "
                "Upgrade, Idempotency-Key, X-Saga-*)."
            )
        for name, text in value.items():  # as written; the engine checks it again rendered
            problem = header_value_problem(text)
            if problem:
                raise serializers.ValidationError(f"Header {name} {problem}.")
        return value

    def validate(self, attrs: dict) -> dict:
        return {
            "method": attrs["method"],
            "url": attrs["url"],
            "headers": dict(attrs.get("headers") or {}),
            "body": attrs.get("body"),
            "timeout_seconds": attrs.get("timeout_seconds", settings.SAGA_CALL_TIMEOUT),
        }


class AsyncSerializer(StrictSerializer):
    timeout_seconds = NumberField(
        min_value=1,
        max_value=MAX_ASYNC_TIMEOUT,
        help_text="Seconds to wait for the callback after a 202 (1–604800).",
    )


class ActionSerializer(CallSerializer):
    """A step's action: a call, optionally asynchronous (`async`, DESIGN §9.4)."""

    def get_fields(self):
        fields = super().get_fields()
        # `async` is a Python keyword: the field cannot be a class attribute.
        fields["async"] = AsyncSerializer(
            required=False,
            allow_null=True,
            help_text=(
                "Asynchronous action: a 202 answer makes the step `waiting` until the "
                "participant POSTs its outcome to X-Saga-Callback-Url (with "
                "X-Saga-Callback-Token), or until timeout_seconds pass (an uncertain "
                "failure, compensated)."
            ),
        )
        return fields

    def validate(self, attrs: dict) -> dict:
        action = super().validate(attrs)
        if attrs.get("async") is not None:
            # Kept only when set: definitions without it normalise as before.
            action["async"] = {"timeout_seconds": attrs["async"]["timeout_seconds"]}
        return action


class RetrySerializer(StrictSerializer):
    max_attempts = WholeNumberField(
        required=False,
        min_value=1,
        max_value=100,
        help_text="Calls in all, the first included (1–100). Default SAGA_RETRY_ATTEMPTS.",
    )
    delay_seconds = NumberField(
        required=False, min_value=0, max_value=3600, help_text="First retry delay (0–3600)."
    )
    backoff_multiplier = NumberField(
        required=False, min_value=1, max_value=10, help_text="Delay growth (1–10), default 2."
    )
    max_delay_seconds = NumberField(
        required=False, min_value=0, max_value=86400, help_text="Delay cap (0–86400), default 60."
    )

    def validate(self, attrs: dict) -> dict:
        return retry_defaults() | dict(attrs)


def retry_defaults() -> dict:
    return {
        "max_attempts": settings.SAGA_RETRY_ATTEMPTS,
        "delay_seconds": float(settings.SAGA_RETRY_DELAY),
        "backoff_multiplier": DEFAULT_BACKOFF,
        "max_delay_seconds": DEFAULT_MAX_DELAY,
    }


def on_failure_field(help_text: str) -> serializers.ChoiceField:
    return serializers.ChoiceField(choices=OnFailure.values, required=False, help_text=help_text)


class StepSerializer(StrictSerializer):
    name = NameField()
    action = ActionSerializer()
    compensation = CallSerializer(
        required=False, allow_null=True, help_text="Optional: the call that undoes the action."
    )
    retry = RetrySerializer(required=False, allow_null=True)
    on_failure = on_failure_field(
        "When the action fails for good: `compensate` (undo the saga) or `pause` (wait for "
        "an operator). Default: the definition's `on_failure`. Stored on every step."
    )

    def run_validation(self, data=serializers.empty):
        if isinstance(data, Mapping) and "parallel" in data:
            raise serializers.ValidationError(
                {"parallel": ["Groups do not nest: a member is an ordinary step."]}
            )
        return super().run_validation(data)

    def validate(self, attrs: dict) -> dict:
        return {
            "name": attrs["name"],
            "action": attrs["action"],
            "compensation": attrs.get("compensation"),
            "retry": attrs.get("retry") or retry_defaults(),
            # None here: the definition fills in its own value (DefinitionSerializer).
            "on_failure": attrs.get("on_failure"),
        }


class GroupSerializer(StrictSerializer):
    """A parallel group (DESIGN §9.3): its members start together."""

    name = NameField()
    parallel = StepSerializer(
        many=True,
        min_length=MIN_MEMBERS,
        max_length=MAX_MEMBERS,
        help_text=f"{MIN_MEMBERS}-{MAX_MEMBERS} ordinary steps, run at the same time.",
    )


class StepEntrySerializer(StepSerializer):
    """An entry of a definition's `steps`: a step, or a group `{"name", "parallel"}`
    (documented as either: schema.StepEntryExtension)."""

    def run_validation(self, data=serializers.empty):
        if isinstance(data, Mapping) and "parallel" in data:
            return GroupSerializer(context=self.context).run_validation(data)
        return super().run_validation(data)


class NotifySerializer(StrictSerializer):
    """Lifecycle webhooks of a definition (DESIGN §9.5)."""

    url = StrictCharField(
        max_length=MAX_URL,
        help_text="http(s) URL the events are POSTed to; the participant host rules apply.",
    )
    events = serializers.ListField(
        child=StrictCharField(max_length=32),
        required=False,
        min_length=1,
        help_text=f"Event types to send (default: all): {', '.join(EVENT_TYPES)}.",
    )

    def validate_url(self, value: str) -> str:
        if "${" in value:
            raise serializers.ValidationError("Must not hold placeholders: it is not templated.")
        problem = hosts.url_problem(value, settings.SAGA_ALLOWED_HOSTS)
        if problem:
            raise serializers.ValidationError(f"URL {problem}.")
        return value

    def validate_events(self, value: list[str]) -> list[str]:
        unknown = [event for event in value if event not in EVENT_TYPES]
        if unknown:
            raise serializers.ValidationError(
                f"Unknown event type(s): {', '.join(unknown)}. Use {', '.join(EVENT_TYPES)}."
            )
        return value

    def validate(self, attrs: dict) -> dict:
        # Normalised: every type named, in one order, once.
        events = set(attrs.get("events") or EVENT_TYPES)
        return {"url": attrs["url"], "events": [e for e in EVENT_TYPES if e in events]}


class DefinitionSerializer(StrictSerializer):
    """A saga definition as posted; `validated_data` is its normalised form (defaults set)."""

    name = NameField()
    description = StrictCharField(
        max_length=MAX_DESCRIPTION, required=False, allow_blank=True, controls_ok="\t\n\r"
    )
    timeout_seconds = NumberField(
        required=False,
        above=0,
        max_value=MAX_DEFINITION_TIMEOUT,
        help_text="Whole-saga deadline in (0, 604800]; default SAGA_TIMEOUT.",
    )
    on_failure = on_failure_field(
        "When an action fails for good: `compensate` (default) or `pause`; a step's own "
        "`on_failure` wins."
    )
    steps = StepEntrySerializer(
        many=True,
        min_length=1,
        max_length=MAX_STEPS,
        help_text=(
            "Steps in order; an entry may be a parallel group"
            ' `{"name": …, "parallel": [step, …]}` (2-20 members, which count toward the'
            " 50 steps)."
        ),
    )
    notify = NotifySerializer(
        required=False,
        allow_null=True,
        help_text="Lifecycle webhooks; refused while SAGA_WEBHOOK_SECRET is not set.",
    )

    def validate_notify(self, value: dict | None) -> dict | None:
        problem = webhook_secret_problem() if value is not None else None
        if problem:
            raise serializers.ValidationError(f"Webhooks cannot be signed: {problem}.")
        return value

    def validate(self, attrs: dict) -> dict:
        on_failure = attrs.get("on_failure", OnFailure.COMPENSATE)
        # The effective value on every step: the engine reads only the step's.
        steps = [_with_on_failure(entry, on_failure) for entry in attrs["steps"]]
        if len(steps_flat(steps)) > MAX_STEPS:
            raise serializers.ValidationError(
                {"steps": [f"At most {MAX_STEPS} steps, the members of groups included."]}
            )
        errors = _duplicate_name_errors(steps) or _template_errors(steps)
        if errors:
            raise serializers.ValidationError({"steps": errors})
        normalised = {
            "name": attrs["name"],
            "description": attrs.get("description", ""),
            "timeout_seconds": attrs.get("timeout_seconds", float(settings.SAGA_TIMEOUT)),
            "on_failure": on_failure,
            "steps": steps,
        }
        # Only when set: a definition without webhooks hashes as it did before them.
        if attrs.get("notify"):
            normalised["notify"] = attrs["notify"]
        return normalised


def _with_on_failure(entry: dict, on_failure: str) -> dict:
    if "parallel" in entry:
        members = [_with_on_failure(member, on_failure) for member in entry["parallel"]]
        return {"name": entry["name"], "parallel": members}
    return dict(entry, on_failure=entry["on_failure"] or on_failure)


def _duplicate_name_errors(steps: list[dict]) -> dict[int, dict]:
    """{step index: errors}, like DRF's list errors: only the failing items. Groups,
    their members and steps share one namespace."""
    seen: set[str] = set()
    errors = {}

    def taken(name: str) -> list[str] | None:
        duplicate = name in seen
        seen.add(name)
        return [f"Duplicate step name '{name}'."] if duplicate else None

    for index, step in enumerate(steps):
        problem = taken(step["name"])
        if problem:
            errors[index] = {"name": problem}
        members = {
            number: {"name": problem}
            for number, member in enumerate(step.get("parallel") or [])
            if (problem := taken(member["name"]))
        }
        if members:
            errors.setdefault(index, {})["parallel"] = members
    return errors


def _template_errors(steps: list[dict]) -> dict[int, dict]:
    """{step index: errors} for placeholders that refer to unknown roots, unknown steps or
    steps that do not run before the call: an action may use the steps before it, a
    compensation also its own step. A group's member may use the steps before its group
    (not its siblings: they run at the same time); the steps after it, every member."""
    names = [step["name"] for step in steps_flat(steps)]
    errors, before = {}, []
    for index, step in enumerate(steps):
        if "parallel" in step:
            siblings = [member["name"] for member in step["parallel"]]
            members = {
                number: problems
                for number, member in enumerate(step["parallel"])
                if (problems := _member_template_errors(member, before, names, siblings))
            }
            if members:
                errors[index] = {"parallel": members}
            before = before + siblings
            continue
        step_errors = _step_template_errors(step, before, names, [])
        if step_errors:
            errors[index] = step_errors
        before = before + [step["name"]]
    return errors


def _member_template_errors(member: dict, before, names, siblings: list[str]) -> dict:
    others = [name for name in siblings if name != member["name"]]
    return _step_template_errors(member, before, names, others)


def _step_template_errors(step: dict, before: list[str], names: list[str], siblings) -> dict:
    step_errors = {}
    for call_name, usable in (("action", before), ("compensation", [*before, step["name"]])):
        call = step.get(call_name)
        call_errors = _call_template_errors(call, usable, names, siblings) if call else {}
        if call_errors:
            step_errors[call_name] = call_errors
    return step_errors


def _call_template_errors(
    call: dict, usable: list[str], names: list[str], siblings: list[str] = ()
) -> dict:
    errors = {}
    for field in ("url", "headers", "body"):
        messages = [
            _sibling_error(path, siblings) or templates.reference_error(path, usable, names)
            for path in templates.placeholders(call[field])
        ]
        messages += _unterminated(call[field])
        messages = [message for message in messages if message]
        if messages:
            errors[field] = messages
    return errors


def _sibling_error(path: str, siblings: list[str]) -> str | None:
    parts = path.split(".")
    if len(parts) > 1 and parts[0] == "steps" and parts[1] in siblings:
        return (
            f"'${{{path}}}': step '{parts[1]}' is a member of the same parallel group"
            " (members run at the same time)"
        )
    return None


def _unterminated(value) -> list[str]:
    """A `${` left after removing the well-formed placeholders is a typo, not text."""
    if isinstance(value, dict):
        return [m for item in value.values() for m in _unterminated(item)]
    if isinstance(value, list):
        return [m for item in value for m in _unterminated(item)]
    if isinstance(value, str) and "${" in templates.PLACEHOLDER.sub("", value):
        return [f"'{value[:80]}' has an unterminated or malformed placeholder"]
    return []


@extend_schema_field(StepEntrySerializer(many=True))
class NormalisedStepsField(serializers.JSONField):
    """The stored steps as they are; documented with the step format."""


@extend_schema_field(NotifySerializer(allow_null=True))
class NotifyOutField(serializers.JSONField):
    """The stored `notify` as it is; documented with the notify format."""


class DefinitionOutSerializer(serializers.Serializer):
    """A stored definition version (steps normalised: every default filled in)."""

    name = serializers.CharField()
    version = serializers.IntegerField()
    description = serializers.CharField()
    timeout_seconds = serializers.FloatField()
    on_failure = serializers.ChoiceField(
        choices=OnFailure.values, help_text="The definition's default; each step shows its own."
    )
    steps = NormalisedStepsField(help_text="Normalised steps (every default filled in).")
    notify = NotifyOutField(
        allow_null=True, help_text="Lifecycle webhooks (every event type named), or null."
    )
    created_at = serializers.DateTimeField()


class DefinitionQuerySerializer(serializers.Serializer):
    version = serializers.IntegerField(
        required=False, min_value=1, help_text="A specific version (default: the latest)."
    )


# Sagas -------------------------------------------------------------------------------


class SagaStartSerializer(StrictSerializer):
    definition = NameField(help_text="Definition name.")
    version = WholeNumberField(
        required=False, allow_null=True, min_value=1, help_text="Default: the latest version."
    )
    input = JsonObjectField(required=False, help_text="A JSON object (default {}).")

    def validate(self, attrs: dict) -> dict:
        return {
            "definition": attrs["definition"],
            "version": attrs.get("version"),
            "input": attrs.get("input", {}),
        }


@functools.cache
def _start_serializer() -> SagaStartSerializer:
    return SagaStartSerializer()


def start_request_validate(data) -> dict:
    """The start request's definition, version and input, or a ValidationError with the
    field-level messages: what `SagaStartSerializer(data=data).is_valid()` gives, without
    building a serializer and its fields on every start. The one instance's fields are
    bound once and only read afterwards, so it serves every request and thread."""
    return _start_serializer().run_validation(data)


class CallbackSerializer(StrictSerializer):
    """A participant's callback for an asynchronous step (DESIGN §9.4)."""

    outcome = serializers.ChoiceField(
        choices=list(OUTCOMES),
        help_text="succeeded: the step succeeded; failed: a permanent failure of the step.",
    )
    response = JsonValueField(
        required=False,
        allow_null=True,
        help_text="Any JSON: the step's response (`${steps.<step>.response…}` in templates).",
    )
    error = StrictCharField(
        required=False,
        allow_null=True,
        allow_blank=True,
        max_length=MAX_CALLBACK_ERROR,
        controls_ok="\t\n\r",
        help_text="Why it failed (the step's error), for `failed`.",
    )


class CallbackOutSerializer(serializers.Serializer):
    saga = serializers.UUIDField()
    step = serializers.CharField()
    outcome = serializers.CharField()
    recorded = serializers.BooleanField(
        help_text="true: recorded now (202); false: the same callback was recorded before (200)."
    )


class StepStateSerializer(serializers.Serializer):
    name = serializers.CharField()
    group = serializers.CharField(
        required=False,
        allow_null=True,
        help_text="The parallel group the step is a member of; absent for an ordinary step.",
    )
    status = serializers.CharField(
        help_text="pending, running, waiting (for a callback), succeeded, failed, ..."
    )
    attempts = serializers.IntegerField()
    compensation_attempts = serializers.IntegerField()
    response = serializers.JSONField(allow_null=True)
    error = serializers.CharField(allow_null=True)


class SagaErrorSerializer(serializers.Serializer):
    code = serializers.ChoiceField(
        choices=["step_failed", "timeout", "cancelled", "compensation_failed"]
    )
    step = serializers.CharField(allow_null=True)
    message = serializers.CharField()


@functools.cache
def step_state_fields() -> tuple[str, ...]:
    """The keys of a step shown by the API (built once: a serializer's fields are not free);
    `group` only on a group's members (_step_shown)."""
    return tuple(name for name in StepStateSerializer().fields if name != "group")


def _step_shown(step: dict, fields: tuple[str, ...]) -> dict:
    shown = {name: step.get(name) for name in fields}
    if step.get("group"):
        shown["group"] = step["group"]
    return shown


class SagaSerializer(serializers.ModelSerializer):
    definition = serializers.CharField(source="definition_name")
    input = JsonObjectField()
    steps = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()
    pause_requested = serializers.SerializerMethodField()

    class Meta:
        model = SagaInstance
        fields = [
            "id",
            "definition",
            "definition_version",
            "status",
            "input",
            "steps",
            "error",
            "cancel_requested",
            "pause_requested",
            "created_at",
            "started_at",
            "finished_at",
            "deadline_at",
        ]

    def get_fields(self):
        # ModelSerializer inspects the model on every instance; every saga response
        # (the start of each saga included) pays it. Inspect once, copy the result.
        cls = type(self)
        if "_model_fields" not in cls.__dict__:
            cls._model_fields = super().get_fields()
        return copy.deepcopy(cls._model_fields)

    @extend_schema_field(StepStateSerializer(many=True))
    def get_steps(self, saga: SagaInstance) -> list[dict]:
        fields = step_state_fields()
        return [_step_shown(step, fields) for step in saga.steps]

    @extend_schema_field(SagaErrorSerializer(allow_null=True))
    def get_error(self, saga: SagaInstance):
        return saga.error

    @extend_schema_field(
        serializers.BooleanField(
            help_text=(
                "A pause was accepted and waits for the call in flight: the saga becomes "
                "`paused` at its next transition."
            )
        )
    )
    def get_pause_requested(self, saga: SagaInstance) -> bool:
        # The engine keeps the request on the row until a resume (who paused, for the
        # history): only a saga not yet paused is still waiting for it.
        waiting = saga.status in (SagaStatus.PENDING, SagaStatus.RUNNING)
        return waiting and saga.pause_request is not None


@functools.cache
def _saga_serializer() -> SagaSerializer:
    return SagaSerializer()


def saga_representation(saga: SagaInstance) -> dict:
    """One saga as the API shows it (SagaSerializer's shape), from one serializer instance
    whose fields are built once per process rather than copied on every response."""
    return _saga_serializer().to_representation(saga)


class SagaFilterSerializer(serializers.Serializer):
    """Query filters of GET /api/sagas/; other query parameters are ignored."""

    status = serializers.ChoiceField(choices=SagaStatus.values, required=False)
    definition = serializers.CharField(required=False, max_length=100)
    created_after = serializers.DateTimeField(
        required=False, help_text="ISO 8601; sagas created at or after this time."
    )
    created_before = serializers.DateTimeField(
        required=False, help_text="ISO 8601; sagas created before this time."
    )


class AttemptSerializer(serializers.ModelSerializer):
    step = serializers.CharField()
    run = serializers.IntegerField(
        help_text=(
            "Which run of the step the call belongs to: 1 for its first, n after the step "
            "was started again by a resume (its Idempotency-Key then ends in `:n`)."
        )
    )
    outcome = serializers.ChoiceField(
        choices=["succeeded", "retryable_error", "permanent_error", "interrupted"],
        allow_null=True,
        help_text=(
            "null while the call is in flight; `interrupted` when a worker died during it "
            "(sent again with the same key and attempt number; not counted as an attempt)."
        ),
    )
    request_headers = serializers.DictField(
        child=serializers.CharField(),
        allow_null=True,
        help_text=(
            "The headers sent; values of Authorization, Cookie, X-API-Key, "
            "X-Saga-Callback-Token and of SAGA_REDACT_HEADERS are `***`. null when the "
            "call was never sent (an unresolved template, a refused URL)."
        ),
    )
    request_body = serializers.JSONField(
        allow_null=True,
        help_text="The body sent: JSON, or text cut at SAGA_LOG_BODY_BYTES; null if none.",
    )
    response_body = serializers.JSONField(
        allow_null=True,
        help_text=(
            "The body received: JSON, or text cut at SAGA_LOG_BODY_BYTES; null if none "
            "(or in flight)."
        ),
    )
    truncated = serializers.BooleanField(
        help_text="True when a body was longer than SAGA_LOG_BODY_BYTES and was cut."
    )

    class Meta:
        model = SagaAttempt
        fields = [
            "step",
            "phase",
            "run",
            "attempt",
            "method",
            "url",
            "status_code",
            "outcome",
            "error",
            "started_at",
            "duration_ms",
            "request_headers",
            "request_body",
            "response_body",
            "truncated",
        ]


# Operator actions and history (DESIGN §9.2) ------------------------------------------------


def reason_field() -> StrictCharField:
    return StrictCharField(
        max_length=MAX_REASON,
        required=False,
        allow_blank=True,
        controls_ok="\t\n\r",
        help_text="Why (at most 500 characters): recorded on the history event.",
    )


class ReasonSerializer(StrictSerializer):
    """The optional body of cancel, retry and pause: no body, `{}` or `{"reason": …}`."""

    reason = reason_field()

    def validate(self, attrs: dict) -> dict:
        return {"reason": attrs.get("reason", "")}


class SkipSerializer(StrictSerializer):
    response = JsonValueField(
        allow_null=True,
        help_text="Recorded as the step's response, as if its participant had answered it.",
    )


@extend_schema_field({"type": "object", "additionalProperties": True})
class MergePatchField(JsonValueField):
    """Any JSON but null, passed on as sent: the service says why it is not a usable patch
    (not an object, or a patched input too large or too deep)."""


class ResumeSerializer(StrictSerializer):
    """The body of resume; every part optional (nothing: continue where it stopped)."""

    from_step = StrictCharField(
        max_length=100,
        required=False,
        help_text=(
            "Rewind: compensate the steps from where the saga stopped back to this one that "
            "took or may have taken effect (reverse order), then run forward again from "
            "it. Not after the stopped step."
        ),
    )
    input_patch = MergePatchField(
        required=False,
        help_text=(
            "An RFC 7396 JSON Merge Patch applied to the saga's input (`null` removes a "
            "key); the result must be an object within SAGA_MAX_INPUT_BYTES and 20 levels."
        ),
    )
    skip = SkipSerializer(
        required=False,
        help_text=(
            "Mark the stopped step `succeeded` with this response without calling its "
            "participant, then go on. Not with `from_step`."
        ),
    )
    reason = reason_field()

    def validate(self, attrs: dict) -> dict:
        skip = attrs.get("skip")
        return {
            "reason": attrs.get("reason", ""),
            "input_patch": attrs.get("input_patch"),  # never None when sent: null is refused
            "from_step": attrs.get("from_step"),
            "skip": dict(skip) if skip is not None else None,
        }


HISTORY_EVENTS = (
    "started",
    "step_succeeded",
    "step_failed",
    "step_waiting",  # an asynchronous step's 202 (issue 11; not in DESIGN §9.2's list)
    "paused",
    "resumed",
    "cancel_requested",
    "compensating",
    "retried",
    "finished",
)


class HistoryEntrySerializer(serializers.Serializer):
    """One event of a saga's history: what happened, when, and who asked."""

    at = serializers.DateTimeField()
    event = serializers.ChoiceField(choices=HISTORY_EVENTS)
    step = serializers.CharField(allow_null=True, help_text="The step concerned, if any.")
    actor = serializers.ChoiceField(
        choices=["system", "client", "internal"],
        help_text="`system`: the engine; else the role of the API key that asked.",
    )
    key_id = serializers.CharField(
        allow_blank=True,
        help_text=(
            "The first 8 hex characters of an HMAC-SHA256 of the key that asked (never the "
            "key); empty for the system."
        ),
    )
    reason = serializers.CharField(allow_blank=True, help_text="As the operator gave it.")
    details = serializers.JSONField(
        allow_null=True,
        help_text=(
            "The event's particulars: for a step event its `phase`, `run`, `attempt`, "
            "`status_code` (and `error`); for `resumed` the `input_patch`, `from_step` or "
            "`skip` given; for `paused` after a failure the saga's `error`; for "
            "`compensating` its `cause`; for `finished` its `status` and `error` code."
        ),
    )


# Webhook events ---------------------------------------------------------------------------


class EventFilterSerializer(serializers.Serializer):
    """Query filters of GET /api/events/; other query parameters are ignored."""

    status = serializers.ChoiceField(choices=WebhookStatus.values, required=False)
    saga = serializers.UUIDField(required=False, help_text="Only this saga's events.")


class EventSerializer(serializers.ModelSerializer):
    """An outbox event and its delivery state."""

    id = serializers.UUIDField(source="event_id", help_text="The body's `id`, X-Saga-Event-Id.")
    saga_id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=WebhookStatus.values)
    attempts = serializers.IntegerField(help_text="Deliveries made, the first included.")
    payload = serializers.JSONField(help_text="The body POSTed to `url`.")
    next_attempt_at = serializers.DateTimeField(help_text="When a pending event is delivered next.")

    class Meta:
        model = WebhookEvent
        fields = [
            "id",
            "type",
            "saga_id",
            "url",
            "status",
            "attempts",
            "next_attempt_at",
            "last_status_code",
            "last_error",
            "created_at",
            "delivered_at",
            "payload",
        ]


# Status ---------------------------------------------------------------------------------


class AlertSerializer(serializers.Serializer):
    name = serializers.CharField()
    message = serializers.CharField()
    value = serializers.FloatField()
    threshold = serializers.FloatField()


class WorkersSerializer(serializers.Serializer):
    alive = serializers.IntegerField()


class ApiFiguresSerializer(serializers.Serializer):
    requests = serializers.IntegerField(help_text="API requests answered in the last hour.")
    error_rate = serializers.FloatField(
        allow_null=True, help_text="Share (0–1) answered with a 5xx; null without requests."
    )
    avg_response_ms = serializers.FloatField(allow_null=True)
    scope = serializers.ChoiceField(
        choices=["cluster", "process"],
        help_text="`cluster`: every API process (counted in Redis); `process`: only the one "
        "that answered (no Redis configured, or Redis unreachable).",
    )


class ResourcesSerializer(serializers.Serializer):
    processes = serializers.IntegerField(
        help_text="API (Gunicorn) worker and saga worker processes measured."
    )
    memory_bytes = serializers.IntegerField(help_text="Their resident memory, summed.")
    memory_limit_bytes = serializers.IntegerField(
        help_text="The cgroup v2 memory limit, else the host's total memory."
    )
    memory_ratio = serializers.FloatField(help_text="memory_bytes / memory_limit_bytes.")
    cpu_limit_cores = serializers.FloatField(
        help_text="The cgroup v2 CPU quota in cores, else the CPU count."
    )
    cpu_ratio = serializers.FloatField(
        help_text="Their CPU seconds per second, over cpu_limit_cores (0–1 and beyond)."
    )


class DependenciesSerializer(serializers.Serializer):
    redis = serializers.ChoiceField(choices=["ok", "down", "disabled"])
    workers = serializers.ChoiceField(
        choices=["ok", "down"], help_text="`down` when no saga worker is alive."
    )


@extend_schema_field(
    {
        "type": "object",
        "properties": {status: {"type": "integer"} for status in SagaStatus.values},
    }
)
class StatusCountsField(serializers.DictField):
    pass


class ServiceStatusSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ok", "degraded"])
    sagas = StatusCountsField(help_text="Total sagas per current status.")
    success_rate = serializers.FloatField(
        allow_null=True, help_text="0–1 over the last hour; null when no saga finished."
    )
    compensation_rate = serializers.FloatField(allow_null=True)
    avg_duration_ms = serializers.FloatField(allow_null=True)
    p95_duration_ms = serializers.FloatField(
        allow_null=True, help_text="95th percentile of created→finished over the last hour."
    )
    finished_last_hour = serializers.IntegerField()
    workers = WorkersSerializer()
    api = ApiFiguresSerializer()
    resources = ResourcesSerializer()
    dependencies = DependenciesSerializer()
    alerts = AlertSerializer(many=True)


# Errors (documentation only) ------------------------------------------------------------------


class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable machine-readable code.")
    detail = serializers.CharField()
    errors = serializers.DictField(
        required=False,
        child=serializers.JSONField(),
        help_text="Field → messages (validation errors only); nested like the input.",
    )
    status = serializers.CharField(
        required=False, help_text="The saga's current status (a 409 about a saga's state)."
    )
    request_id = serializers.CharField()
