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


class SecretFiles:
    def __init__(self, globs: tuple[str, ...]) -> None:
        names = [fnmatch.translate(g) for g in globs if "/" not in g]
        paths = [fnmatch.translate(g) for g in globs if "/" in g]
        self._names = re.compile("|".join(names)) if names else None
        self._paths = re.compile("|".join(paths)) if paths else None

    def by_name(self, path: str) -> bool:
        """True if the file at `path` (a str, "/" separated) is named like a secret."""
        name = path.rsplit("/", 1)[-1]
        return bool((self._names and self._names.match(name))
                    or (self._paths and self._paths.match(path)))


def secret_content(text: str) -> bool:
    """True if `text` is a credentials file by what it holds, whatever its name."""
    head = text[:4096]
    return ('"type"' in head or "kind:" in head) and any(p.search(head) for p in _CONTENT)
