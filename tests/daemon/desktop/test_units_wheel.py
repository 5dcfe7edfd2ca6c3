"""The unit templates ship inside the wheel: an installed memoryd, with no source tree
anywhere, renders its systemd unit and its launchd plist."""

from __future__ import annotations

import json
import plistlib
import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import version
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
# What the build reads: the packages, the templates they link to, and the metadata.
BUILD_INPUTS = ["pyproject.toml", "README.md", "daemon", "collectors", "models", "service"]

RENDER = """
import json, sys
import daemon
from daemon.config import load_config
from daemon.desktop import units
cfg = load_config(None)
print(json.dumps({"daemon": daemon.__file__, "systemd": units.render_systemd(cfg),
                  "launchd": units.render_launchd(cfg)}))
"""


def _build_wheel(tmp_path: Path) -> Path:
    src, dist = tmp_path / "src", tmp_path / "dist"
    src.mkdir()
    for name in BUILD_INPUTS:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, src / name)
    # The build's own setuptools (this venv's): no build isolation, so no download.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(dist), str(src)], check=True, capture_output=True)
    (wheel,) = dist.glob("memoryd-*.whl")
    return wheel


def test_the_wheel_carries_the_unit_templates_as_files(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as z:
        for name in ("memoryd.service", "dev.memoryd.plist"):
            shipped = z.read(f"daemon/desktop/templates/{name}").decode()
            assert shipped == (REPO / "service" / name).read_text()
        assert "daemon/desktop/statuspage.html" in z.namelist()

    # A fresh venv that sees none of this machine's packages nor this clone: the wheel
    # and the one third-party package units.py needs (daemon.config reads platformdirs).
    venv = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q",
                    "--no-deps", str(wheel), f"platformdirs=={version('platformdirs')}"],
                   check=True, capture_output=True)
    home = tmp_path / "home"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "MEMORYD_HOME": str(home)}
    out = subprocess.run([str(py), "-I", "-c", RENDER], cwd=tmp_path, env=env, check=True,
                         capture_output=True, text=True)
    got = json.loads(out.stdout)
    assert Path(got["daemon"]).is_relative_to(venv)  # not this clone

    exe = venv / "bin" / "memoryd"
    unit = got["systemd"]
    assert f"ExecStart={exe}  run" in unit.splitlines()
    assert f'Environment="MEMORYD_HOME={home}"' in unit.splitlines()
    assert "Type=notify" in unit.splitlines()
    settings = [line for line in unit.splitlines() if not line.startswith("#")]
    assert not [line for line in settings if "@" in line]  # every placeholder filled
    assert "Documentation=" not in unit  # no README outside a clone
    plist = plistlib.loads(got["launchd"].encode())
    assert plist["ProgramArguments"] == [str(exe), "run"]
    log = Path(plist["StandardErrorPath"])
    assert log.name == "memoryd.log" and log.is_relative_to(home)
