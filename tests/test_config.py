from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from daemon.config import load_config
from daemon.errors import ConfigError
from tests.conftest import run_cli


def test_defaults_fill_every_key_and_memoryd_home_relocates(memoryd_home: Path) -> None:
    cfg = load_config()
    assert cfg.data_dir == str((memoryd_home / "data").resolve())
    assert cfg.collectors.files.roots == ("~/src", "~/Documents")
    assert cfg.collectors.browser.history_files == ()
    assert cfg.collectors.shell.history_files == ()
    assert cfg.api.port == 7077
    assert cfg.socket_path == Path(cfg.data_dir) / "memoryd.sock"
    assert cfg.token_path == Path(cfg.data_dir) / "token"


def test_toml_overrides_defaults(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text('data_dir = "~/mem"\n[collectors.files]\nroots = ["/a", "/b"]\n'
                 '[collectors.browser]\nhistory_files = ["/h/History"]\n[api]\nport = 9001\n')
    cfg = load_config(p)
    assert cfg.data_dir == str(Path("~/mem").expanduser().resolve())
    assert cfg.collectors.files.roots == ("/a", "/b")
    assert cfg.collectors.browser.history_files == ("/h/History",)
    assert cfg.api.port == 9001
    assert cfg.collectors.files.max_file_bytes == 2_000_000  # untouched keys keep defaults


@pytest.mark.parametrize("text, words", [
    ("[api]\nprot = 1\n", "unknown key api.'prot'"),
    ("[api]\nport = 'x'\n", "api.port must be a number"),
    ("[collectors.files]\nroots = '/a'\n", "must be a list of strings"),
    ("data_dir = [", "is not valid TOML"),
])
def test_bad_config_names_file_and_key(tmp_path: Path, text: str, words: str) -> None:
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(p)
    assert words in str(err.value)
    assert str(p) in str(err.value)


def test_missing_explicit_config_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_config_command_prints_the_effective_config(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text(f'data_dir = "{tmp_path}/d"\n[collectors.files]\nroots = ["{tmp_path}/r"]\n')
    for argv in (("config",), ):
        out = run_cli(p, *argv).stdout
        table = tomllib.loads(out)
        assert table["data_dir"] == f"{tmp_path}/d"
        assert table["collectors"]["files"]["roots"] == [f"{tmp_path}/r"]
        assert table["api"]["port"] == 7077
        assert table["collectors"]["shell"]["history_files"] == []
    # --config is accepted after the subcommand too
    out = run_cli(None, "config", "--config", str(p)).stdout
    assert tomllib.loads(out)["data_dir"] == f"{tmp_path}/d"


def test_cli_reports_a_bad_config_without_a_traceback(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text("[api]\nport = 'x'\n")
    proc = run_cli(p, "status", check=False)
    assert proc.returncode == 1
    assert "api.port must be a number" in proc.stderr
    assert "Traceback" not in proc.stderr


@dataclass(frozen=True)
class _Target:
    name: str = ""
    url: str = ""


@dataclass(frozen=True)
class _Section:
    targets: tuple[_Target, ...] = ()
    routes: dict[str, tuple[str, ...]] = field(default_factory=dict)


def test_arrays_of_tables_and_tables_of_lists_are_typed_and_checked() -> None:
    from daemon.config_tables import build_dataclass as _build

    built = _build(_Section, {"targets": [{"name": "a", "url": "dir:///x"}],
                              "routes": {"compaction": ["big", "local"]}}, "sync.")
    assert built.targets == (_Target("a", "dir:///x"),)
    assert built.routes == {"compaction": ("big", "local")}
    with pytest.raises(ConfigError, match=r"sync\.targets\[0\]\.'nme'"):
        _build(_Section, {"targets": [{"nme": "a"}]}, "sync.")
    with pytest.raises(ConfigError, match="array of tables"):
        _build(_Section, {"targets": {"name": "a"}}, "sync.")
    with pytest.raises(ConfigError, match="lists of strings"):
        _build(_Section, {"routes": {"compaction": "big"}}, "sync.")
