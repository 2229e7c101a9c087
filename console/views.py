"""The console's pages (DESIGN §9.7). Each view reads through the API's selectors or acts
through its services, and hands the template what console/presenters.py shaped."""

import functools
from urllib.parse import urlencode

from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_POST

from console import actions, listing, presenters, session
from console import selectors as console_selectors
from console.forms import ActionForm, ResumeForm, SignInForm
from health.checks import health_report
from sagas import selectors
from sagas.api.serializers import AttemptSerializer
from sagas.engine.control import Actor
from sagas.engine.repair import pause_refusal, resume_refusal
from sagas.engine.transitions import cancel_refusal
from sagas.errors import Conflict, Invalid
from sagas.models import TERMINAL_STATUSES, SagaStatus


def render(request, template: str, context: dict, status: int = 200):
    context = {
        "role": session.role(request),
        "notice": session.notice_pop(request),
        **context,
    }
    return TemplateResponse(request, f"console/{template}", context, status=status)


def signed_in(view):
    """Signed-out requests go to the sign-in page, which brings them back afterwards."""

    @csrf_protect
    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        if not session.signed_in(request):
            target = reverse("console:sign-in") + "?" + urlencode({"next": request.get_full_path()})
            return HttpResponseRedirect(target)
        return view(request, *args, **kwargs)

    return wrapper


def error_page(request, status: int, title: str, message: str):
    return render(request, "error.html", {"title": title, "message": message}, status=status)


def csrf_failure(request, reason: str = ""):
    """CSRF_FAILURE_VIEW: a form without a valid token (stale page, or another site)."""
    return error_page(
        request,
        403,
        "Form expired or forged",
        "This form's security token is missing or out of date. Reload the page and try again.",
    )


# --- Sign in and out ---------------------------------------------------------------------


@csrf_protect
def sign_in(request):
    form = SignInForm(request.POST or None)
    next_url = request.POST.get("next") or request.GET.get("next") or ""
    if request.method == "GET" and session.signed_in(request):
        return HttpResponseRedirect(_safe_next(request, next_url))
    if request.method == "POST" and form.is_valid():
        if session.sign_in(request, form.cleaned_data["key"]):
            return HttpResponseRedirect(_safe_next(request, next_url))
        form.add_error("key", "That is not a valid API key. Check it and try again.")
    status = 401 if form.errors else 200
    # PasswordInput never renders the value: the key is not echoed back into the page.
    return render(request, "sign_in.html", {"form": form, "next": next_url}, status=status)


def _safe_next(request, next_url: str) -> str:
    allowed = next_url.startswith("/console/") and url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return next_url if allowed else reverse("console:sagas")


@csrf_protect
def sign_out(request):
    if request.method == "POST":
        session.sign_out(request)
        return HttpResponseRedirect(reverse("console:sign-in"))
    if request.method != "GET":
        return HttpResponseNotAllowed(["GET", "POST"])
    return render(request, "sign_out.html", {})


# --- Sagas -------------------------------------------------------------------------------


@signed_in
def saga_list(request):
    page = listing.page_read(request.GET)
    query = {k: v for k, v in request.GET.items() if k not in ("before", "after") and v}
    tabs = [
        {
            **entry,
            "selected": request.GET.get("status") == entry["status"],
            "query": urlencode({**query, "status": entry["status"]}),
        }
        for entry in page.counts
    ]
    context = {
        "page": page,
        "tabs": tabs,
        "all_query": urlencode({k: v for k, v in query.items() if k != "status"}),
        "all_selected": not request.GET.get("status"),
        "query": query,
        "older_query": urlencode({**query, "before": page.older}) if page.older else None,
        "newer_query": urlencode({**query, "after": page.newer}) if page.newer else None,
        "statuses": SagaStatus.values,
        "definitions": list(selectors.definition_list().values_list("name", flat=True)),
    }
    return render(request, "saga_list.html", context, status=400 if page.errors else 200)


def saga_context(request, saga) -> dict:
    attempts = selectors.saga_attempt_list(saga_id=saga.id)
    entries = AttemptSerializer(attempts, many=True).data
    now = timezone.now()
    return {
        "saga": saga,
        "summary": presenters.saga_summary(status=saga.status, error=saga.error, steps=saga.steps),
        "input_json": presenters.pretty_json(saga.input),
        "steps": saga.steps,
        "timeline": presenters.timeline_build(attempts, now=now),
        "attempts": [_attempt_view(i, e) for i, e in enumerate(entries)],
        "history": [
            {**event, "details_text": presenters.compact_json(event["details"])}
            for event in selectors.saga_history(saga_id=saga.id)
        ],
        "active": saga.status not in TERMINAL_STATUSES,
        # A saga waiting out a retry delay: when its next call is due.
        "next_attempt_at": _retry_due(saga, now),
        "actions": _actions_offered(request, saga),
        "step_names": [step["name"] for step in saga.steps],
    }


def _retry_due(saga, now):
    due = saga.next_attempt_at
    waiting = saga.status in ("running", "compensating") and due is not None and due > now
    return due if waiting else None


def _attempt_view(index: int, entry: dict) -> dict:
    return {
        **entry,
        "index": index,
        "outcome_shown": entry["outcome"] or "in_flight",
        "duration": presenters.duration_words(entry["duration_ms"]),
        "request_body_text": presenters.pretty_json(entry.get("request_body")),
        "response_body_text": presenters.pretty_json(entry.get("response_body")),
    }


def _actions_offered(request, saga) -> list[str]:
    """The actions the role may take that the saga's status allows (the service decides
    for good: a stale page's action gets the service's 409)."""
    fits = {
        "cancel": cancel_refusal(saga.status, saga.cancel_requested) is None,
        "retry": saga.status == SagaStatus.FAILED,
        "pause": pause_refusal(saga.status, saga.cancel_requested, saga.pause_request) is None,
        "resume": resume_refusal(saga.status) is None,
    }
    return [a for a in session.ACTIONS.get(session.role(request) or "", ()) if fits[a]]


@signed_in
def saga_detail(request, saga_id):
    saga = selectors.saga_get(saga_id=saga_id)
    if saga is None:
        return error_page(request, 404, "No such saga", f"No saga has the id {saga_id}.")
    return render(request, "saga_detail.html", saga_context(request, saga))


@require_POST
@signed_in
def saga_action(request, saga_id, action: str):
    if not session.may(request, action):
        return error_page(request, 403, "Not allowed", f"Your key's role may not {action} sagas.")
    saga = selectors.saga_get(saga_id=saga_id)
    if saga is None:
        return error_page(request, 404, "No such saga", f"No saga has the id {saga_id}.")
    form = (ResumeForm if action == "resume" else ActionForm)(request.POST)
    if not form.is_valid():
        return _action_refused(request, saga, action, form, 400)
    arguments, problems = actions.body_validate(action=action, body=form.body())
    if problems:
        for field, message in problems:
            if field in form.fields:
                form.add_error(field, message)
            else:
                form.add_error(None, f"{field}: {message}")
        return _action_refused(request, saga, action, form, 400)
    actor = Actor(role=session.role(request), key_id=request.session[session.KEY_ID])
    try:
        actions.saga_act(action=action, saga_id=saga.id, actor=actor, arguments=arguments)
    except Conflict as error:
        form.add_error(None, error.detail)
        return _action_refused(request, saga, action, form, 409)
    except Invalid as error:
        form.add_error(error.field if error.field in form.fields else None, error.detail)
        return _action_refused(request, saga, action, form, 400)
    session.notice_set(request, f"{action.capitalize()} accepted.")
    return HttpResponseRedirect(reverse("console:saga", args=[saga.id]))


def _action_refused(request, saga, action: str, form, status: int):
    context = {**saga_context(request, saga), "failed_action": action, "failed_form": form}
    return render(request, "saga_detail.html", context, status=status)


# --- Definitions -------------------------------------------------------------------------


@signed_in
def definition_list(request):
    return render(request, "definition_list.html", {"definitions": selectors.definition_list()})


@signed_in
def definition_detail(request, name: str):
    version = request.GET.get("version", "")
    number = int(version) if version.isdigit() else None
    if version and number is None:
        return error_page(request, 400, "Bad version", "A version is a whole number.")
    definition = selectors.definition_get(name=name, version=number)
    if definition is None:
        return error_page(request, 404, "No such definition", f"No definition {name} {version}.")
    versions = console_selectors.definition_versions(name=name)
    context = {
        "definition": definition,
        "versions": versions,
        "entries": presenters.diagram_entries(definition.steps),
        "json": presenters.pretty_json(definition.steps),
    }
    return render(request, "definition_detail.html", context)


# --- Status ------------------------------------------------------------------------------


@signed_in
def status_page(request):
    now = timezone.now()
    since = now - selectors.STATS_WINDOW
    started = presenters.minute_buckets(console_selectors.sagas_started_since(since=since), now=now)
    recent = selectors.finished_since(since)  # read once: the figures and the charts
    spans = [(created, finished) for _, created, finished in recent]
    finished = presenters.minute_buckets([f for _, f in spans], now=now)
    stats = selectors.saga_stats(now=now, recent=recent)
    context = {
        "stats": stats,
        "alerts": [presenters.alert_words(alert) for alert in stats["alerts"]],
        "health": health_report(),
        "charts": [
            {"title": "Started per minute", "unit": "", **presenters.chart_bars(started)},
            {"title": "Finished per minute", "unit": "", **presenters.chart_bars(finished)},
            {
                "title": "p95 duration per minute",
                "unit": "ms",
                **presenters.chart_bars(presenters.p95_per_minute(spans, now=now)),
            },
        ],
    }
    return render(request, "status.html", context)
