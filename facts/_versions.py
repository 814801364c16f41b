"""Version strings as tools print them, reduced to the upstream release they were built from."""

from __future__ import annotations

import re

from packaging.version import Version

# An upstream release (`2.1.4`, `v2.1.4`, `2.1.0-rc.1`, `2.4.0-beta`) followed by whatever a packager or
# build appended: Debian `~ds1`, Ubuntu `-0ubuntu4`, RPM `-1.el9`, a dev build's `+unknown`.
_RELEASE = re.compile(r"v?(?P<release>\d+(?:\.\d+)+)(?P<pre>-(?:alpha|beta|rc)(?:\.?\d+)?)?(?:[~+\-].*)?")


def upstream_version(raw: str) -> str | None:
    """
    The upstream release in ``raw``, normalised by PEP 440 (``"v2.1.4"`` and ``"2.1.4"`` both give
    ``"2.1.4"``, ``"1.6.20~ds1"`` gives ``"1.6.20"``, ``"2.1.0-rc.1"`` gives ``"2.1.0rc1"``); ``None``
    when ``raw`` does not start with a release number.
    """
    match = _RELEASE.fullmatch(raw)
    if match is None:
        return None
    return str(Version(match["release"] + (match["pre"] or "")))
