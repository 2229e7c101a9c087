"""Parallel groups in definitions (DESIGN §9.3): stored nested with defaults filled in,
the same definition hashes the same, and every group rule is a 400 naming the field; a
saga of such a definition lists the members with their group."""

import pytest

from sagas.api.schema import GROUP_DEFINITION
from tests.api_builders import call, definition, post_definition, step

pytestmark = [pytest.mark.django_db, pytest.mark.sqlite]


def grouped(members=None, after=None) -> dict:
    members = members or [
        step("stock", call("/stock", body={"order": "${input.order}"})),
        step("card", call("/card"), call("/card/${steps.card.response.id}", method="DELETE")),
    ]
    after = after or [
        step(
            "ship",
            call(
                "/ship", body={"s": "${steps.stock.response.id}", "c": "${steps.card.status_code}"}
            ),
        )
    ]
    return definition("grouped", [step("order"), {"name": "prepare", "parallel": members}, *after])


def test_a_group_is_stored_nested_with_defaults_and_shown_as_registered(internal_api):
    response = post_definition(internal_api, grouped())

    assert response.status_code == 201, response.json()
    shown = internal_api.get("/api/saga-definitions/grouped/").json()
    entry = shown["steps"][1]
    assert entry["name"] == "prepare" and set(entry) == {"name", "parallel"}
    assert [m["name"] for m in entry["parallel"]] == ["stock", "card"]
    assert entry["parallel"][0]["on_failure"] == "compensate"
    assert entry["parallel"][0]["retry"]["max_attempts"] >= 1  # defaults filled in
    again = post_definition(internal_api, grouped())
    assert again.status_code == 200 and again.json()["version"] == 1  # same hash


def test_a_saga_lists_the_members_as_steps_with_their_group(internal_api, client_api):
    post_definition(internal_api, grouped())

    saga = client_api.post(
        "/api/sagas/", {"definition": "grouped", "input": {"order": "A-1"}}, format="json"
    ).json()

    assert [(s["name"], s.get("group")) for s in saga["steps"]] == [
        ("order", None),
        ("stock", "prepare"),
        ("card", "prepare"),
        ("ship", None),
    ]
    assert "group" not in saga["steps"][0]  # an ordinary step shows as before


SIBLING = [step("stock"), step("card", call("/card", body={"s": "${steps.stock.response}"}))]
NESTED = [step("stock"), {"name": "inner", "parallel": [step("a"), step("b")]}]
CASES = {
    "one member": ([step("stock")], None, ("steps", "1", "parallel")),
    "21 members": ([step(f"m{i}") for i in range(21)], None, ("steps", "1", "parallel")),
    "nested group": (NESTED, None, ("steps", "1", "parallel", "1", "parallel")),
    "member refers to a sibling": (
        SIBLING,
        None,
        ("steps", "1", "parallel", "1", "action", "body"),
    ),
    "member named like a step": (
        [step("order"), step("card")],
        None,
        ("steps", "1", "parallel", "0", "name"),
    ),
    "group named like a later step": (None, [step("prepare")], ("steps", "2", "name")),
    "member without action": ([step("stock"), {"name": "card"}], None, ("steps", "1", "parallel")),
    "unknown key on the group": (None, None, ("steps", "1", "retry")),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_group_rules_are_400_naming_the_field(internal_api, case):
    members, after, path = CASES[case]
    body = grouped(members, after)
    if case == "unknown key on the group":
        body["steps"][1]["retry"] = {"max_attempts": 2}

    response = post_definition(internal_api, body)

    assert response.status_code == 400, response.json()
    errors = response.json()["errors"] if "errors" in response.json() else response.json()
    for key in path[:-1]:
        errors = errors[key]
    assert path[-1] in errors, response.json()


def test_members_count_toward_the_50_step_limit(internal_api):
    members = [step(f"m{i}") for i in range(20)]
    groups = [{"name": f"g{g}", "parallel": [step(f"g{g}m{i}") for i in range(20)]} for g in (1, 2)]
    body = definition("big", [*groups, {"name": "g3", "parallel": members[:11]}])

    response = post_definition(internal_api, body)

    assert response.status_code == 400
    assert "50 steps" in str(response.json())


def test_the_documented_group_example_is_accepted(internal_api):
    response = post_definition(internal_api, GROUP_DEFINITION)

    assert response.status_code == 201, response.json()
    assert response.json()["steps"][0]["parallel"][1]["name"] == "authorise_payment"
