"""The daemon's main process stays small: what only the worker or the CLI needs is not
imported by `memoryd run` (the worker holds LanceDB, pyarrow and the models; httpx,
with the rich and pygments its own CLI drags in, serves only client commands)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# Each costs the always-running process memory (httpx + rich + pygments ~4 MB; LanceDB and
# pyarrow ~170 MB; torch far more) and start-up time, and is needed only elsewhere.
NOT_IN_THE_DAEMON = ("httpx", "rich", "pygments", "lancedb", "pyarrow", "numpy",
                     "torch", "sentence_transformers", "llama_cpp", "boto3", "botocore",
                     "jsonschema",  # jsonschema: only once a request offers tools
                     "aiohttp")  # ~9 MB: only once a router model over HTTP is configured

# Runs the real `memoryd run` in this process; once /health answers on 127.0.0.1 it
# writes the imported module names and stops the daemon with SIGTERM, as a user would.
PROBE = '''
import http.client, os, signal, sys, threading, time
from pathlib import Path

config, data, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])

def watch():
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection(
                "127.0.0.1", int((data / "api.port").read_text()), timeout=5)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                out.write_text("\\n".join(sorted(sys.modules)))
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    os.kill(os.getpid(), signal.SIGTERM)

if __name__ == "__main__":  # the daemon's spawned children (the reader) import this file
    threading.Thread(target=watch, daemon=True).start()
    from daemon.cli.main import main
    sys.exit(main(["--config", config, "run"]))
'''


def test_memoryd_run_imports_no_worker_or_cli_only_package(tmp_path: Path, make_config) -> None:
    config = make_config()
    probe, out = tmp_path / "probe.py", tmp_path / "modules.txt"
    probe.write_text(PROBE)
    proc = subprocess.run([sys.executable, str(probe), str(config), str(tmp_path / "data"),
                           str(out)], capture_output=True, text=True, timeout=180)
    assert out.exists(), f"the daemon never answered /health:\n{proc.stderr[-3000:]}"
    modules = set(out.read_text().split())
    assert {"daemon.runner", "daemon.api.app", "uvicorn"} <= modules  # it was the real daemon
    loaded = sorted(m for m in modules if m.split(".")[0] in NOT_IN_THE_DAEMON)
    roots = sorted({m.split(".")[0] for m in loaded})
    assert not loaded, (f"`memoryd run` imported {roots} in its main process; import them "
                        f"where they are used (inside the function), e.g. {loaded[:5]}")
    assert proc.returncode == 0, proc.stderr[-3000:]
