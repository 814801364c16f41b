"""Version specs a component is locked from: a pin (``2.1.4``, ``v2.1.4``), a constraint (``~=2.1``,
``>=1.7,<2``) or ``latest``, parsed with ``packaging``."""

from __future__ import annotations

from dataclasses import dataclass

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

LATEST = "latest"
_OPERATORS = ("~=", "==", "!=", "<=", ">=", "<", ">")
_PREFIXES = ("go", "v")


class SpecError(ValueError):
    """A version spec that is none of: a version, a constraint, ``latest``."""


@dataclass(frozen=True)
class Spec:
    """A parsed spec. ``text`` is what the user wrote (it is recorded in the lock file as the ``constraint``).

    ``pin`` is the version string of a pin (tag prefix stripped, spelled as given: ``2.0.0-rc.1``), else None.
    ``specifier`` is None for ``latest``.
    """

    text: str
    pin: str | None
    specifier: SpecifierSet | None

    def allows(self, version: Version) -> bool:
        """Whether ``version`` satisfies the spec. Prereleases satisfy only a spec that names one."""
        if self.specifier is None:
            return not version.is_prerelease
        return self.specifier.contains(version, prereleases=bool(self.specifier.prereleases))


def strip_prefix(text: str) -> str:
    """``v2.1.4`` and ``go1.23.4`` -> the version alone; anything else unchanged."""
    for prefix in _PREFIXES:
        if text.startswith(prefix) and text[len(prefix) :][:1].isdigit():
            return text[len(prefix) :]
    return text


def parse_spec(text: str) -> Spec:
    """Parse ``text``; :class:`SpecError` says what is accepted when it is none of them."""
    text = text.strip()
    if text == LATEST:
        return Spec(text, None, None)
    if text.startswith(_OPERATORS):
        try:
            return Spec(text, None, SpecifierSet(text))
        except InvalidSpecifier:
            pass
    else:
        pin = strip_prefix(text)
        try:
            Version(pin)
        except InvalidVersion:
            pass
        else:
            return Spec(text, pin, SpecifierSet(f"=={pin}"))
    raise SpecError(
        f"{text!r} is not a version spec; accepted: a version (2.1.4 or v2.1.4), a constraint"
        " (~=2.1, >=1.7,<2) or latest"
    )
