"""Developer tool: keep the translation catalogs in step with the templates.

    python -m bot.i18n_tools update   # add new messages to bot/locale/ko/LC_MESSAGES/*.po
    python -m bot.i18n_tools check    # list messages without a Korean translation (exit 1)

Each template folder (bot/templates/<feature>/) has its own catalog <feature>.po, so features
never edit the same catalog file.
"""

from __future__ import annotations

import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po, write_po

from bot.i18n import LOCALE_DIR
from bot.render import TEMPLATE_DIR

TRANSLATED_LANGUAGES = ("ko",)
JINJA_OPTIONS = {
    "extensions": "jinja2.ext.do,jinja2.ext.loopcontrols",
    "trimmed": "true",
    "newstyle_gettext": "true",
}


def extract(feature_dir: Path) -> Catalog:
    """Every translatable message in one feature's templates."""
    catalog = Catalog(project="moim", fuzzy=False)
    method_map = [("**.html", "jinja2.ext:babel_extract"), ("**.txt", "jinja2.ext:babel_extract")]
    options_map = {"**.html": JINJA_OPTIONS, "**.txt": JINJA_OPTIONS}
    for filename, lineno, message, comments, context in extract_from_dir(
        str(feature_dir), method_map, options_map
    ):
        catalog.add(
            message,
            None,
            [(f"{feature_dir.name}/{filename}", lineno)],
            auto_comments=comments,
            context=context,
        )
    return catalog


def features() -> list[Path]:
    """The template folders, one per feature."""
    return sorted(path for path in TEMPLATE_DIR.iterdir() if path.is_dir())


def po_path(language: str, feature: str) -> Path:
    """Where a feature's catalog of a language lives."""
    return LOCALE_DIR / language / "LC_MESSAGES" / f"{feature}.po"


def update() -> None:
    """Add new messages to every catalog, keep translations, mark vanished ones obsolete."""
    for feature_dir in features():
        template = extract(feature_dir)
        for language in TRANSLATED_LANGUAGES:
            path = po_path(language, feature_dir.name)
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                with path.open("rb") as handle:
                    catalog = read_po(handle, locale=language)
                # Keep the header's dates, so an update without new messages changes nothing.
                template.creation_date = catalog.creation_date
            else:
                catalog = Catalog(locale=language, project="moim")
            catalog.update(template, no_fuzzy_matching=True)
            catalog.obsolete.clear()
            with path.open("wb") as handle:
                write_po(handle, catalog, width=99, sort_output=False, omit_header=False)
            print(f"{path.relative_to(LOCALE_DIR.parent.parent)}: {len(catalog)} messages")


def missing() -> list[tuple[str, str, str]]:
    """(language, feature, msgid) for every message without a usable translation."""
    gaps = []
    for feature_dir in features():
        template = extract(feature_dir)
        for language in TRANSLATED_LANGUAGES:
            path = po_path(language, feature_dir.name)
            catalog = None
            if path.exists():
                with path.open("rb") as handle:
                    catalog = read_po(handle, locale=language)
            for message in template:
                if not message.id:
                    continue
                found = catalog.get(message.id, message.context) if catalog else None
                strings = (
                    found.string
                    if found and isinstance(found.string, tuple)
                    else (found.string,)
                    if found
                    else ()
                )
                if found is None or found.fuzzy or not all(strings):
                    key = message.id if isinstance(message.id, str) else message.id[0]
                    gaps.append((language, feature_dir.name, key))
    return gaps


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    command = (argv or sys.argv[1:] or ["check"])[0]
    if command == "update":
        update()
        return 0
    gaps = missing()
    for language, feature, message in gaps:
        print(f"{language} {feature}: {message}")
    return 1 if gaps else 0


if __name__ == "__main__":
    raise SystemExit(main())
