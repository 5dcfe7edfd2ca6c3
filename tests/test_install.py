"""install.sh, end to end: `./install.sh --no-start` from a copy of the clone into a
temporary prefix, bin dir and MEMORYD_HOME; the copy is deleted and the installed daemon
still starts (a regular install, not an editable one); `memoryd --help` and `memoryd
models` work; `./install.sh --uninstall` removes memoryd and keeps the user's memory and
config.

To stay fast it installs nothing heavy again: the prefix's virtualenv is made first, with
a .pth line that puts this test's own environment (torch, llama-cpp-python, the models'
packages, all pinned by install.sh) after its own site-packages, so install.sh finds them
installed and pip resolves against them; memoryd itself is built and installed for real
into the new virtualenv. A plain .pth path line runs no code, so this environment's
editable memoryd (its finder hook) is not loaded there: what imports is the new install.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import httpx
import pytest
import tomli_w

from tests.conftest import MODELS_DIR

REPO = Path(__file__).resolve().parents[1]
# What a clone holds that install.sh and the build read.
CLONE = ["install.sh", "pyproject.toml", "README.md", "daemon", "collectors", "models",
         "service", "tests/apt-packages.txt"]


def _copy_clone(dest: Path) -> Path:
    for name in CLONE:
        src, dst = REPO / name, dest / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)
    return dest


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update({
        "HOME": str(tmp / "user"),  # the user's units and dirs: never this machine's
        "PIP_CACHE_DIR": os.environ.get("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip")),
        "MEMORYD_PREFIX": str(tmp / "prefix"),
        "MEMORYD_BIN_DIR": str(tmp / "bin"),
        "MEMORYD_HOME": str(tmp / "memoryd-home"),
        "MEMORYD_WHEEL_CACHE": str(tmp / "wheels"),  # uninstall removes it: never the real one
        "PYTHON": sys._base_executable,  # type: ignore[attr-defined]
    })
    for conf in (Path.home() / ".config" / "pip" / "pip.conf", Path.home() / ".pip" / "pip.conf"):
        if conf.is_file() and "PIP_CONFIG_FILE" not in env:  # the user's index, kept
            env["PIP_CONFIG_FILE"] = str(conf)
    return env


def _prepare_venv(prefix: Path) -> Path:
    venv = prefix / "venv"
    subprocess.run([sys._base_executable, "-m", "venv", str(venv)],  # type: ignore[attr-defined]
                   check=True)
    site = Path(subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()"
         "['purelib'])"], check=True, capture_output=True, text=True).stdout.strip())
    (site / "zz-memoryd-test-shared.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def _write_config(home: Path) -> Path:
    home.mkdir(parents=True)
    cfg = home / "config.toml"
    cfg.write_text(tomli_w.dumps({
        "collectors": {"files": {"roots": []}, "browser": {"enabled": False},
                       "shell": {"enabled": False}},
        "api": {"port": 0},
        "models": {"dir": str(MODELS_DIR)},  # the assembled GGUF this machine already has
    }))
    return cfg


def _wait_health(proc: subprocess.Popen[bytes], socket: Path, log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"memoryd run exited {proc.returncode}:\n{log.read_text()}")
        if socket.exists():
            try:
                with httpx.Client(transport=httpx.HTTPTransport(uds=str(socket)),
                                  base_url="http://localhost") as c:
                    if c.get("/health", timeout=5).status_code == 200:
                        return
            except httpx.TransportError:
                pass
        time.sleep(0.2)
    raise AssertionError(f"memoryd never answered /health:\n{log.read_text()}")


@pytest.mark.timeout(900)
def test_install_run_without_the_clone_and_uninstall(tmp_path: Path, models_dir: Path) -> None:
    clone = _copy_clone(tmp_path / "clone")
    env = _env(tmp_path)
    venv = _prepare_venv(tmp_path / "prefix")
    cfg = _write_config(tmp_path / "memoryd-home")
    started = time.monotonic()
    out = subprocess.run([str(clone / "install.sh"), "--no-start"], env=env, cwd=tmp_path,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    print(out.stdout, f"install.sh took {time.monotonic() - started:.0f} s")
    assert "editable" not in out.stdout
    assert not (clone / "build").exists() and not list(clone.glob("*.egg-info"))

    shutil.rmtree(clone)  # the user deletes the clone
    memoryd = tmp_path / "bin" / "memoryd"
    assert memoryd.resolve() == (venv / "bin" / "memoryd").resolve()
    where = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import daemon; print(daemon.__file__)"], env=env, cwd=tmp_path,
                           check=True, capture_output=True, text=True).stdout.strip()
    assert Path(where).is_relative_to(venv), where

    helped = subprocess.run([str(memoryd), "--help"], env=env, capture_output=True, text=True)
    assert helped.returncode == 0 and "models" in helped.stdout, helped.stderr
    models = subprocess.run([str(memoryd), "models"], env=env, capture_output=True, text=True)
    assert models.returncode == 0, models.stderr
    assert "(verified)" in models.stdout and "summarizer" in models.stdout

    log = tmp_path / "run.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen([str(memoryd), "run"], env=env, stdout=fh,
                                stderr=subprocess.STDOUT)
    try:
        _wait_health(proc, tmp_path / "memoryd-home" / "data" / "memoryd.sock", log)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    data = tmp_path / "memoryd-home" / "data"
    keepsake = data / "keep-me.txt"  # stands for the user's memory
    keepsake.write_text("mine")
    gone = subprocess.run([str(REPO / "install.sh"), "--uninstall"], env=env, cwd=tmp_path,
                          capture_output=True, text=True)
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert not venv.exists() and not memoryd.is_symlink()
    assert keepsake.read_text() == "mine" and cfg.is_file()
    assert f"Your memory is still in {data} and your config in {cfg}" in gone.stdout
