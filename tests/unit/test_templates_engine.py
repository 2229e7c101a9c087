import pytest

from sagas.engine.templates import TemplateError, context_for, render, render_headers

STEPS = [
    {
        "name": "reserve",
        "response": {"id": "r 1/2", "n": 3, "items": [{"sku": "a"}]},
        "status_code": 201,
    },
    {"name": "charge", "response": None, "status_code": 503},
    {"name": "ship", "response": None, "status_code": None},
]
CONTEXT = context_for(
    "s-1", "checkout", {"order": "A-1", "qty": 2, "tags": ["x"], "none": None}, STEPS
)


def test_a_whole_placeholder_keeps_its_json_type():
    body = {"qty": "${input.qty}", "tags": "${input.tags}", "n": "${steps.reserve.response.n}"}
    assert render(body, CONTEXT) == {"qty": 2, "tags": ["x"], "n": 3}
    assert render("${input.none}", CONTEXT) is None
    assert render("${steps.reserve.response.items.0.sku}", CONTEXT) == "a"
    assert render("${steps.reserve.status_code}", CONTEXT) == 201
    assert render("${saga.id}/${saga.definition}", CONTEXT) == "s-1/checkout"


def test_a_placeholder_inside_text_is_interpolated():
    assert (
        render("order ${input.order} x${input.qty} ${input.tags}", CONTEXT) == 'order A-1 x2 ["x"]'
    )


def test_url_placeholders_are_url_encoded():
    url = render("http://h/r/${steps.reserve.response.id}?q=${input.order}", CONTEXT, url=True)
    assert url == "http://h/r/r%201%2F2?q=A-1"


def test_an_unresolved_placeholder_names_the_missing_path():
    with pytest.raises(TemplateError, match=r"input\.missing"):
        render({"a": "${input.missing.deep}"}, CONTEXT)


def test_compensations_resolve_a_response_never_returned_to_null():
    assert render("${steps.ship.response.id}", CONTEXT, lenient_steps=True) is None
    assert render("${steps.charge.response.id}", CONTEXT, lenient_steps=True) is None
    with pytest.raises(TemplateError):
        render("${steps.ship.response.id}", CONTEXT)
    # A response that did come back but lacks the field is still an error.
    with pytest.raises(TemplateError):
        render("${steps.reserve.response.nope}", CONTEXT, lenient_steps=True)


def test_headers_are_text_and_never_carry_line_breaks():
    assert render_headers({"X-Qty": "${input.qty}", "X-O": "o-${input.order}"}, CONTEXT) == {
        "X-Qty": "2",
        "X-O": "o-A-1",
    }
    evil = context_for("s", "d", {"v": "a\r\nX-Injected: 1"}, [])
    with pytest.raises(TemplateError, match="line break"):
        render_headers({"X-T": "${input.v}"}, evil)


def test_url_placeholders_never_form_a_dot_segment():
    dots = context_for("s", "d", {"one": ".", "two": "..", "three": "...", "mid": "a.b"}, [])
    url = "http://p/u/${input.two}/o/${input.one}/${input.three}/${input.mid}?q=${input.two}"
    assert render(url, dots, url=True) == "http://p/u/%2E%2E/o/%2E/.../a.b?q=%2E%2E"
    # Outside URLs the value is text as it is.
    assert render("a/${input.two}/b", dots) == "a/../b"


@pytest.mark.parametrize("index", ["²", "١"])
def test_an_index_in_other_digits_is_a_template_error_not_a_crash(index):
    """Definitions stored before registration refused these still fail as templates do
    (permanently), never with a ValueError that reschedules the saga forever."""
    with pytest.raises(TemplateError, match="is missing"):
        render(f"${{input.tags.{index}}}", CONTEXT)
