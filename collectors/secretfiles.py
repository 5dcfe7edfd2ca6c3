"""Files whose names say they hold secrets (`.env`, `id_ed25519`, `*.pem`, kubeconfig,
cloud service-account JSON, ...): the files collector records them as metadata only
and never reads them, and the daemon's privacy gate strips the content of any event that
names one (an editor or agent pushing it through the API).

A glob without "/" matches the file name; one with "/" matches the whole path.
"""

from __future__ import annotations

import fnmatch
import re

# A service-account key or a kubeconfig under any name, told by its content.
_CONTENT = (
    re.compile(r'"type"\s*:\s*"service_account"'),
    re.compile(r'"type"\s*:\s*"(?:authorized_user|external_account)"'),
    re.compile(r"(?m)^kind:\s*Config\s*$[\s\S]*^users:"),
)


_WILD = frozenset("*?[")


def _literal_tail(glob: str) -> str:
    """What every match of `glob` ends with: its characters after the last wildcard."""
    cut = max(glob.rfind(c) for c in _WILD)
    return glob[cut + 1:] if cut >= 0 and glob[cut] != "[" else ""


class SecretFiles:
    """The `[privacy] secret_files` globs, asked of every event the privacy gate passes:
    names, name prefixes and suffixes (most of the list: `.netrc`, `id_rsa*`, `*.pem`)
    are looked up as strings; a glob with more wildcards is a pattern, tried only on names
    ending as it does."""

    def __init__(self, globs: tuple[str, ...]) -> None:
        self._exact: set[str] = set()
        prefixes: list[str] = []
        suffixes: list[str] = []
        names: list[str] = []
        paths: list[str] = []
        for g in globs:
            if "/" in g:
                paths.append(g)
            elif not _WILD.intersection(g):
                self._exact.add(g)
            elif g[0] == "*" and not _WILD.intersection(g[1:]):
                suffixes.append(g[1:])
            elif g[-1] == "*" and not _WILD.intersection(g[:-1]):
                prefixes.append(g[:-1])
            else:
                names.append(g)
        self._prefixes, self._suffixes = tuple(prefixes), tuple(suffixes)
        self._name_tails, self._names = _patterns(names)
        self._path_tails, self._paths = _patterns(paths)

    def by_name(self, path: str) -> bool:
        """True if the file at `path` (a str, "/" separated) is named like a secret."""
        name = path[path.rfind("/") + 1:]
        return (name in self._exact or name.endswith(self._suffixes)
                or name.startswith(self._prefixes)
                or (name.endswith(self._name_tails) and self._names.match(name) is not None)
                or (path.endswith(self._path_tails) and self._paths.match(path) is not None))


_NEVER = re.compile(r"(?!)")


def _patterns(globs: list[str]) -> tuple[tuple[str, ...], re.Pattern[str]]:
    """The globs as one pattern, and what their matches end with (a cheap first test)."""
    if not globs:
        return (), _NEVER
    return (tuple(_literal_tail(g) for g in globs),
            re.compile("|".join(fnmatch.translate(g) for g in globs)))


def secret_content(text: str) -> bool:
    """True if `text` is a credentials file by what it holds, whatever its name."""
    head = text[:4096]
    return ('"type"' in head or "kind:" in head) and any(p.search(head) for p in _CONTENT)
