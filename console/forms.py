"""The console's forms: sign-in, and the confirmation and reason every action carries."""

import json

from django import forms

MAX_REASON = 500


class SignInForm(forms.Form):
    key = forms.CharField(
        label="API key",
        max_length=512,
        strip=True,
        widget=forms.PasswordInput(attrs={"autocomplete": "off", "autofocus": True}),
    )


class ActionForm(forms.Form):
    """Cancel, retry, pause: a confirmation box (server-checked too) and a reason."""

    confirm = forms.BooleanField(
        required=True, error_messages={"required": "Tick the box to confirm."}
    )
    reason = forms.CharField(required=False, max_length=MAX_REASON, widget=forms.Textarea)


class ResumeForm(ActionForm):
    """Resume (DESIGN §9.2): optionally from a step, with an input patch, or skipping the
    stopped step with a given response. The service validates what these mean."""

    from_step = forms.CharField(required=False, max_length=100)
    input_patch = forms.CharField(required=False, widget=forms.Textarea)
    skip = forms.BooleanField(required=False)
    skip_response = forms.CharField(required=False, widget=forms.Textarea)

    def clean_input_patch(self):
        return _json_or_none(self.cleaned_data["input_patch"], "input_patch")

    def clean_skip_response(self):
        return _json_or_none(self.cleaned_data["skip_response"], "skip_response")

    def resume_options(self) -> dict:
        data = self.cleaned_data
        return {
            "from_step": data["from_step"] or None,
            "input_patch": data["input_patch"],
            "skip": {"response": data["skip_response"]} if data["skip"] else None,
        }


def _json_or_none(text: str, name: str):
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError as error:
        raise forms.ValidationError(f"Not valid JSON: {error}.") from None
