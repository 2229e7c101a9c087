"""The console's forms: sign-in, and the confirmation and reason every action carries."""

import json

from django import forms

# A JSON field left empty (distinct from a typed `null`, which is JSON).
EMPTY = object()


class SignInForm(forms.Form):
    key = forms.CharField(
        label="API key",
        max_length=512,
        strip=True,
        widget=forms.PasswordInput(attrs={"autocomplete": "off", "autofocus": True}),
    )


class ActionForm(forms.Form):
    """Cancel, retry, pause: a confirmation box (server-checked too) and a reason. What
    the form posts becomes the API's body (`body()`), which the API's serializer checks."""

    confirm = forms.BooleanField(
        required=True, error_messages={"required": "Tick the box to confirm."}
    )
    reason = forms.CharField(required=False, strip=False, widget=forms.Textarea)

    def body(self) -> dict:
        return {"reason": self.cleaned_data["reason"]}


class ResumeForm(ActionForm):
    """Resume (DESIGN §9.2): optionally from a step, with an input patch, or skipping the
    stopped step with a given response. The API's serializer and the service validate
    what these mean; the form only reads the JSON typed in."""

    from_step = forms.CharField(required=False)
    input_patch = forms.CharField(required=False, widget=forms.Textarea)
    skip = forms.BooleanField(required=False)
    skip_response = forms.CharField(required=False, widget=forms.Textarea)

    def clean_input_patch(self):
        return _json_or_empty(self.cleaned_data["input_patch"])

    def clean_skip_response(self):
        return _json_or_empty(self.cleaned_data["skip_response"])

    def body(self) -> dict:
        data = self.cleaned_data
        body = super().body()
        if data["from_step"]:
            body["from_step"] = data["from_step"]
        if data["input_patch"] is not EMPTY:
            body["input_patch"] = data["input_patch"]
        if data["skip"]:
            response = data["skip_response"]
            body["skip"] = {"response": None if response is EMPTY else response}
        return body


def _json_or_empty(text: str):
    if not text.strip():
        return EMPTY
    try:
        return json.loads(text)
    except ValueError as error:
        raise forms.ValidationError(f"Not valid JSON: {error}.") from None
