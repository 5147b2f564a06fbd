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


SHARED_DOMAIN = "common"


class Catalogs:
    """Every catalog, read once; a feature's templates get its own catalog over `common`.

    Features translate independently: the same English text may read differently in two
    features ("cancelled": 취소 for a sign-up, 취소됨 for a meeting date).
    """

    def __init__(self, locale_dir: Path = LOCALE_DIR) -> None:
        self.locale_dir = locale_dir
        self._merged: dict[tuple[str, str], Catalog] = {}

    @property
    def languages(self) -> tuple[str, ...]:
        """The supported languages, the default first."""
        return SUPPORTED_LANGUAGES

    def for_feature(self, language: str, feature: str) -> Catalog:
        """The catalog a template of ``feature`` is translated with."""
        key = (language, feature)
        if key not in self._merged:
            catalog = Catalog(language)
            for domain in dict.fromkeys((SHARED_DOMAIN, feature)):
                _read_into(catalog, self.locale_dir / language / "LC_MESSAGES" / f"{domain}.po")
            self._merged[key] = catalog
        return self._merged[key]


def _read_into(catalog: Catalog, po_path: Path) -> None:
    """Add one .po file's translations; fuzzy or empty ones are left out."""
    if not po_path.exists():
        return
    with po_path.open("rb") as handle:
        po = read_po(handle, locale=catalog.language)
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


def _plural_rule(po):
    """A function count -> plural form index, from the catalog's Plural-Forms header."""
    return gettext.c2py(po.plural_expr)


def negotiate_language(telegram_code: str | None, default: str = "ko") -> str:
    """Pick ko or en from Telegram's language_code; Korean (the default) otherwise."""
    if telegram_code:
        base = telegram_code.split("-")[0].lower()
        if base in SUPPORTED_LANGUAGES:
            return base
    return default
