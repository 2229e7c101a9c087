"""`manage.py load_saga_definitions PATH`: same validation as the API, idempotent."""

import json

import pytest
from django.core.management import CommandError, call_command

from sagas.models import SagaDefinition
from tests.api_builders import definition

pytestmark = pytest.mark.django_db


def run(path) -> str:
    from io import StringIO

    out = StringIO()
    call_command("load_saga_definitions", str(path), stdout=out, stderr=out)
    return out.getvalue()


def write(folder, name: str, body) -> None:
    text = body if isinstance(body, str) else json.dumps(body)
    (folder / name).write_text(text, encoding="utf-8")


def test_loads_a_folder_then_creates_nothing_when_unchanged(tmp_path):
    write(tmp_path, "a.json", definition("alpha"))
    write(tmp_path, "b.json", definition("beta"))
    write(tmp_path, "notes.txt", "not a definition")

    first = run(tmp_path)
    again = run(tmp_path)

    assert "created alpha v1" in first
    assert "created beta v1" in first
    assert "unchanged alpha v1" in again
    assert "unchanged beta v1" in again
    assert SagaDefinition.objects.count() == 2


def test_changed_file_creates_the_next_version(tmp_path):
    path = tmp_path / "a.json"
    write(tmp_path, "a.json", definition("alpha"))
    run(path)
    write(tmp_path, "a.json", definition("alpha", description="changed"))

    assert "created alpha v2" in run(path)


def test_invalid_files_are_reported_and_fail_the_command(tmp_path, capsys):
    write(tmp_path, "good.json", definition("good"))
    write(tmp_path, "broken.json", "{not json")
    write(tmp_path, "invalid.json", definition("Bad Name"))

    with pytest.raises(CommandError, match="2 definition file"):
        call_command("load_saga_definitions", str(tmp_path))

    err = capsys.readouterr().err
    assert "broken.json: error: not readable JSON" in err
    assert "invalid.json: error:" in err
    assert "name" in err
    assert SagaDefinition.objects.filter(name="good").exists()


def test_missing_path_fails(tmp_path):
    with pytest.raises(CommandError, match="neither a file nor a folder"):
        run(tmp_path / "missing.json")


def test_same_normalisation_as_the_api(tmp_path, internal_api):
    write(tmp_path, "a.json", definition("shared"))
    run(tmp_path / "a.json")

    response = internal_api.post("/api/saga-definitions/", definition("shared"), format="json")

    assert response.status_code == 200
    assert response.json()["version"] == 1
