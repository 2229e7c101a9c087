"""`python manage.py load_saga_definitions PATH`: load a JSON definition file or a folder.

Same validation and versioning as POST /api/saga-definitions/: an unchanged file creates
nothing. Prints one line per file; exits non-zero when any file was invalid.
"""

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from rest_framework.exceptions import APIException

from sagas.api.serializers import DefinitionSerializer
from sagas.services import definition_create


def definition_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(child for child in path.glob("*.json") if child.is_file())
    if path.is_file():
        return [path]
    raise CommandError(f"{path} is neither a file nor a folder")


def load_file(path: Path) -> str:
    """Load one file; returns what happened. Raises ValueError with the reason if invalid."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeError, ValueError, RecursionError) as exc:
        raise ValueError(f"not readable JSON: {exc}")
    serializer = DefinitionSerializer(data=data)
    if not serializer.is_valid():
        raise ValueError(json.dumps(serializer.errors, ensure_ascii=False))
    try:
        definition, created = definition_create(data=serializer.validated_data)
    except APIException as exc:
        raise ValueError(str(exc.detail))
    verb = "created" if created else "unchanged"
    return f"{verb} {definition.name} v{definition.version}"


class Command(BaseCommand):
    help = "Load saga definitions from a JSON file or a folder of *.json files."

    def add_arguments(self, parser):
        parser.add_argument("path", help="a .json file or a folder of them")

    def handle(self, *args, **options):
        failed = 0
        for path in definition_files(Path(options["path"])):
            try:
                outcome = load_file(path)
            except ValueError as exc:
                failed += 1
                self.stderr.write(f"{path}: error: {exc}")
                continue
            self.stdout.write(f"{path}: {outcome}")
        if failed:
            raise CommandError(f"{failed} definition file(s) were invalid")
