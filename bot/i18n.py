"""Translations: gettext catalogs (one .po per feature and language) read with Babel."""

from __future__ import annotations

import gettext
from dataclasses import dataclass, field
from pathlib import Path

from babel.messages.pofile import read_po

from bot.config import SUPPORTED_LANGUAGES

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
SOURCE_LANGUAGE = "en"  # msgids are English; every other language needs a catalog


@dataclass
class Catalog:
    """The merged translations of one language, in the shape Jinja2's i18n extension wants."""

    language: str
    singular: dict[tuple[str | None, str], str] = field(default_factory=dict)
    plural: dict[tuple[str | None, str], tuple[str, ...]] = field(default_factory=dict)
    plural_rule: object = None

    def gettext(self, message: str) -> str:
        """Translate one message (the English text when there is no translation)."""
        return self.singular.get((None, message)) or message

    def ngettext(self, singular: str, plural: str, count: int) -> str:
        """Translate a message that depends on a count."""
        forms = self.plural.get((None, singular))
        if forms and self.plural_rule is not None:
            index = self.plural_rule(count)
            if index < len(forms) and forms[index]:
                return forms[index]
        return singular if count == 1 else plural

    def pgettext(self, context: str, message: str) -> str:
        """Translate a message with a disambiguating context."""
        return self.singular.get((context, message)) or message

    def npgettext(self, context: str, singular: str, plural: str, count: int) -> str:
        """Translate a counted message with a context."""
        forms = self.plural.get((context, singular))
        if forms and self.plural_rule is not None:
            index = self.plural_rule(count)
            if index < len(forms) and forms[index]:
                return forms[index]
        return singular if count == 1 else plural


def load_catalog(language: str, locale_dir: Path = LOCALE_DIR) -> Catalog:
    """Merge every .po file of a language; fuzzy or empty translations are left out."""
    catalog = Catalog(language)
    directory = locale_dir / language / "LC_MESSAGES"
    for po_path in sorted(directory.glob("*.po")):
        with po_path.open("rb") as handle:
            po = read_po(handle, locale=language)
        catalog.plural_rule = _plural_rule(po)
        for message in po:
            if not message.id or message.fuzzy:
                continue
            context = message.context
            if isinstance(message.id, tuple):
                forms = tuple(message.string or ())
                if any(forms):
                    catalog.plural[(context, message.id[0])] = forms
            elif message.string:
                catalog.singular[(context, message.id)] = message.string
    return catalog


def _plural_rule(po):
    """A function count -> plural form index, from the catalog's Plural-Forms header."""
    return gettext.c2py(po.plural_expr)


def load_catalogs(locale_dir: Path = LOCALE_DIR) -> dict[str, Catalog]:
    """Catalogs for every supported language."""
    return {language: load_catalog(language, locale_dir) for language in SUPPORTED_LANGUAGES}


def negotiate_language(telegram_code: str | None, default: str = "ko") -> str:
    """Pick ko or en from Telegram's language_code; Korean (the default) otherwise."""
    if telegram_code:
        base = telegram_code.split("-")[0].lower()
        if base in SUPPORTED_LANGUAGES:
            return base
    return default
