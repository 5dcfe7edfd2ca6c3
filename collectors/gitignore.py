"""Which paths a git repository ignores, asked of git itself (`git check-ignore`), so
every .gitignore rule, global excludes file and negation works as the user expects."""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

log = logging.getLogger(__name__)


@lru_cache(maxsize=4096)
def repo_of(folder: Path) -> Path | None:
    """The nearest folder at or above `folder` that is a git work tree, or None."""
    for candidate in (folder, *folder.parents):
        if (candidate / ".git").exists():
            return candidate
    return None


class GitIgnore:
    def __init__(self) -> None:
        self.git = shutil.which("git")
        if self.git is None:
            log.warning("git is not installed: .gitignore rules are not applied to watched "
                        "repositories (install git to skip ignored files)")

    def ignored(self, paths: Iterable[Path]) -> set[Path]:
        """Return the subset of `paths` that their git repository ignores."""
        if self.git is None:
            return set()
        by_repo: dict[Path, list[Path]] = {}
        for p in paths:
            repo = repo_of(p.parent)
            if repo is not None:
                by_repo.setdefault(repo, []).append(p)
        out: set[Path] = set()
        for repo, members in by_repo.items():
            out.update(self._ask(repo, members))
        return out

    def _ask(self, repo: Path, paths: list[Path]) -> set[Path]:
        data = b"\0".join(str(p).encode("utf-8", "surrogateescape") for p in paths) + b"\0"
        try:
            proc = subprocess.run([str(self.git), "-C", str(repo), "check-ignore", "-z",
                                   "--stdin"], input=data, capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.info("git check-ignore failed in %s (%s); not filtering there", repo, exc)
            return set()
        if proc.returncode not in (0, 1):  # 1 means: nothing ignored
            log.info("git check-ignore in %s: %s", repo,
                     proc.stderr.decode(errors="replace").strip())
            return set()
        return {Path(p.decode("utf-8", "surrogateescape"))
                for p in proc.stdout.split(b"\0") if p}
