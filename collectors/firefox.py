"""Firefox history: `places.sqlite` in each profile.

`moz_places` holds one row per URL (default bookmarks too, never visited), and
`moz_historyvisits` one row per visit, so visits are read through the join. Visit times
are microseconds since 1970-01-01 UTC. The file is in WAL mode and Firefox holds it with
an exclusive lock, so it is read from a copy of places.sqlite and places.sqlite-wal
(an immutable read of the main file alone misses everything still in the WAL).
"""

from __future__ import annotations

import configparser
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

log = logging.getLogger(__name__)

FAMILY = "firefox"
TABLES = {"moz_places": frozenset({"id", "url", "title", "hidden"}),
          "moz_historyvisits": frozenset({"id", "place_id", "visit_date", "visit_type"})}
VISITS_TABLE, TIME_COLUMN = "moz_historyvisits", "visit_date"

# Rows: visit id, URL, title, raw time, raw visit type, and whether the visit is not a
# page the user saw: Firefox hides redirect sources and framed pages (moz_places.hidden),
# and embedded loads (type 4) are not pages at all.
VISITS_SQL = """
SELECT v.id, p.url, p.title, v.visit_date, v.visit_type,
       p.hidden = 1 OR v.visit_type = 4
FROM moz_historyvisits v JOIN moz_places p ON p.id = v.place_id
WHERE v.id > ? ORDER BY v.id LIMIT ?
"""

# nsINavHistoryService TRANSITION_* constants.
VISIT_TYPES = {1: "link", 2: "typed", 3: "bookmark", 4: "embed", 5: "redirect_permanent",
               6: "redirect_temporary", 7: "download", 8: "framed_link", 9: "reload"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Folders holding profiles.ini, relative to home: Linux native, snap, flatpak, macOS.
# On Windows: %APPDATA%\Mozilla\Firefox (not searched yet).
FIREFOX_DIRS = (".mozilla/firefox", "snap/firefox/common/.mozilla/firefox",
                ".var/app/org.mozilla.firefox/.mozilla/firefox",
                "Library/Application Support/Firefox")


def find(where: Callable[[str], Path]) -> Iterator[tuple[Path, str, str]]:
    """Yield (places.sqlite, "firefox", profile name) for every profile in profiles.ini,
    and for profile folders it does not list."""
    for root in map(where, FIREFOX_DIRS):
        if not root.is_dir():
            continue
        profiles: dict[Path, str] = {}
        ini = configparser.ConfigParser(interpolation=None, strict=False)
        try:
            ini.read(root / "profiles.ini", encoding="utf-8")
        except (configparser.Error, UnicodeDecodeError) as exc:
            log.warning("cannot parse %s (%s); looking for profile folders instead",
                        root / "profiles.ini", exc)
        for section in ini.sections():
            if section.startswith("Profile") and ini.has_option(section, "Path"):
                path = Path(ini.get(section, "Path"))
                if ini.get(section, "IsRelative", fallback="1").strip() == "1":
                    path = root / path
                profiles[path] = ini.get(section, "Name", fallback=path.name)
        for places in [*root.glob("*/places.sqlite"), *root.glob("Profiles/*/places.sqlite")]:
            profiles.setdefault(places.parent, places.parent.name)
        for path, name in profiles.items():
            if (path / "places.sqlite").is_file():
                yield path / "places.sqlite", "firefox", name


def to_utc(raw: float) -> datetime:
    """Given Firefox's microseconds since 1970-01-01 UTC, return an aware UTC datetime."""
    return _EPOCH + timedelta(microseconds=int(raw))


def transition(raw: int | None) -> str | None:
    if raw is None:
        return None
    return VISIT_TYPES.get(int(raw), f"type{raw}")
