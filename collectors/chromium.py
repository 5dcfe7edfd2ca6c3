"""Chromium-family history: the `History` SQLite file of Chrome, Chromium, Brave, Edge,
Vivaldi and Opera (one per profile).

`urls` holds one row per URL (with its latest title), `visits` one row per visit. Visit
times are microseconds since 1601-01-01 UTC (the Windows FILETIME epoch). `transition`
is a signed 32-bit PageTransition: the low byte is the core type, the high bits are
qualifiers. While the browser runs it holds History locked (exclusive locking mode, a
transaction open between commits every ~10 s), so it is read from a copy of History and
History-journal: SQLite rolls the copied journal back and the copy shows what was
committed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

FAMILY = "chromium"
TABLES = {"urls": frozenset({"id", "url", "title"}),
          "visits": frozenset({"id", "url", "visit_time", "transition"})}
VISITS_TABLE, TIME_COLUMN = "visits", "visit_time"

# Bits of the PageTransition qualifiers (ui/base/page_transition_types.h).
CHAIN_END = 0x20000000
REDIRECT_HOP = 0x10000000 | 0x40000000 | 0x80000000  # chain start, client or server redirect

# Rows: visit id, URL, title, raw time, raw transition, and whether the visit is not a
# page the user saw: a subframe, or a redirect hop that is not the end of its chain.
VISITS_SQL = f"""
SELECT v.id, u.url, u.title, v.visit_time, v.transition,
       (v.transition & 255) IN (3, 4)
       OR ((v.transition & {CHAIN_END}) = 0 AND (v.transition & {REDIRECT_HOP}) != 0)
FROM visits v JOIN urls u ON u.id = v.url
WHERE v.id > ? ORDER BY v.id LIMIT ?
"""

CORE_TYPES = ("link", "typed", "auto_bookmark", "auto_subframe", "manual_subframe",
              "generated", "auto_toplevel", "form_submit", "reload", "keyword",
              "keyword_generated")
_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)

# User-data folders, relative to home (~/.config follows XDG_CONFIG_HOME): Linux native,
# snap and flatpak, then macOS. On Windows they are %LOCALAPPDATA%\Google\Chrome\User Data,
# Chromium\User Data, BraveSoftware\Brave-Browser\User Data, Microsoft\Edge\User Data,
# Vivaldi\User Data and %APPDATA%\Opera Software\Opera Stable (not searched yet).
USER_DATA_DIRS = {
    "chrome": (".config/google-chrome", ".config/google-chrome-beta",
               ".config/google-chrome-unstable", ".var/app/com.google.Chrome/config/google-chrome",
               "Library/Application Support/Google/Chrome",
               "Library/Application Support/Google/Chrome Beta"),
    "chromium": (".config/chromium", "snap/chromium/common/chromium",
                 ".var/app/org.chromium.Chromium/config/chromium",
                 "Library/Application Support/Chromium"),
    "brave": (".config/BraveSoftware/Brave-Browser",
              "snap/brave/current/.config/BraveSoftware/Brave-Browser",
              ".var/app/com.brave.Browser/config/BraveSoftware/Brave-Browser",
              "Library/Application Support/BraveSoftware/Brave-Browser"),
    "edge": (".config/microsoft-edge", ".config/microsoft-edge-beta", ".config/microsoft-edge-dev",
             ".var/app/com.microsoft.Edge/config/microsoft-edge",
             "Library/Application Support/Microsoft Edge"),
    "vivaldi": (".config/vivaldi", ".config/vivaldi-snapshot",
                ".var/app/com.vivaldi.Vivaldi/config/vivaldi",
                "Library/Application Support/Vivaldi"),
    "opera": (".config/opera", ".config/opera-beta", "snap/opera/current/.config/opera",
              ".var/app/com.opera.Opera/config/opera",
              "Library/Application Support/com.operasoftware.Opera"),
}


def find(where: Callable[[str], Path]) -> Iterator[tuple[Path, str, str]]:
    """Yield (History, browser, profile name) for every profile of every Chromium browser:
    each folder of a user-data dir that holds a History file (Default, Profile 1, ...)."""
    for browser, dirs in USER_DATA_DIRS.items():
        for udd in map(where, dirs):
            if not udd.is_dir():
                continue
            names = _profile_names(udd)
            if (udd / "History").is_file():  # Opera keeps its one profile in the top folder
                yield udd / "History", browser, udd.name
            for db in sorted(udd.glob("*/History")):
                if db.is_file() and db.parent.name not in ("System Profile", "Guest Profile"):
                    yield db, browser, names.get(db.parent.name, db.parent.name)


def _profile_names(udd: Path) -> dict[str, str]:
    """Names the user gave profiles ("Work"), by folder, from `Local State`; a profile
    still under its default name ("Your Chrome", "Person 1") keeps its folder's name."""
    try:
        cache = json.loads((udd / "Local State").read_text("utf-8"))["profile"]["info_cache"]
        return {d: str(info["name"]) for d, info in cache.items()
                if info.get("name") and not info.get("is_using_default_name", True)}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def to_utc(raw: float) -> datetime:
    """Given Chromium's microseconds since 1601-01-01 UTC, return an aware UTC datetime."""
    return _EPOCH + timedelta(microseconds=int(raw))


def transition(raw: int | None) -> str | None:
    """Given the stored `transition` (qualifier bits and all), return its core type."""
    if raw is None:
        return None
    core = int(raw) & 0xFF
    return CORE_TYPES[core] if core < len(CORE_TYPES) else f"type{core}"
