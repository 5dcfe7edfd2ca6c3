"""The configuration: defaults in code, one TOML file overrides them.

Given the path of a TOML file (or none), `load_config` returns a frozen `Config` where
every key has a value. `MEMORYD_HOME` relocates the config file and the data dir at once
(tests and portable installs use it); `--config PATH` names the file directly.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import platformdirs

from daemon.config_tables import build_dataclass
from daemon.errors import ConfigError

APP = "memoryd"


def default_config_path() -> Path:
    home = os.environ.get("MEMORYD_HOME")
    if home:
        return Path(home) / "config.toml"
    return Path(platformdirs.user_config_dir(APP)) / "config.toml"


def default_data_dir() -> Path:
    home = os.environ.get("MEMORYD_HOME")
    if home:
        return Path(home) / "data"
    return Path(platformdirs.user_data_dir(APP))


@dataclass(frozen=True)
class FilesConfig:
    enabled: bool = True
    roots: tuple[str, ...] = ("~/src", "~/Documents")
    max_file_bytes: int = 2_000_000  # larger files are recorded as metadata only
    snippet_chars: int = 16_000  # text kept from a changed file
    settle_seconds: float = 1.0  # a path quiet this long counts as one save
    exclude: tuple[str, ...] = ()  # extra glob patterns to skip


@dataclass(frozen=True)
class BrowserConfig:
    enabled: bool = True
    history_files: tuple[str, ...] = ()
    history_days: int = 90  # older visits are not collected on first run; 0 keeps all


@dataclass(frozen=True)
class ShellConfig:
    enabled: bool = True
    history_files: tuple[str, ...] = ()
    history_days: int = 90  # older commands are not collected on first run; 0 keeps all


@dataclass(frozen=True)
class CollectorsConfig:
    files: FilesConfig = field(default_factory=FilesConfig)
    browser: BrowserConfig = field(default_factory=BrowserConfig)
    shell: ShellConfig = field(default_factory=ShellConfig)


@dataclass(frozen=True)
class ApiConfig:
    port: int = 7077  # 127.0.0.1 only; 0 picks a free port (written to <data_dir>/api.port)
    max_request_bytes: int = 1_000_000


@dataclass(frozen=True)
class ModelsConfig:
    summarizer: str = "qwen2.5-coder-0.5b-instruct"  # a manifest name or a path to any GGUF
    embedder: str = "all-minilm-l6-v2"  # a manifest name or a sentence-transformers folder
    embedder_runtime: str = "onnx"  # the worker's indexing embedder: "onnx" (the packaged
    # embedder's fp32 export, no torch; a folder embedder and a failed export use torch)
    # or "torch" (sentence-transformers)
    dir: str = ""  # where packaged models are assembled; "" means <data_dir>/models
    threads: int = 0  # llama.cpp threads; 0 means every core
    embed_threads: int = 0  # indexing threads (ONNX or torch); 0 = every core. Indexing
    # takes the cores between the worker's completions, never beside one (models/cores.py:
    # llama.cpp slows many-fold when its threads compete for cores).
    context_tokens: int = 4096
    summary_max_tokens: int = 120
    idle_unload_seconds: float = 300.0  # models (and the worker holding them) leave after this


@dataclass(frozen=True)
class PipelineConfig:
    interval_seconds: float = 2.0  # how often the daemon drains the journal
    batch_events: int = 256
    worker_nice: int = 10  # the model worker's niceness (0-19): its indexing and summaries
    # yield the cores to the user's programs and to searches; 0 = as the daemon
    chunk_gap_seconds: float = 300.0  # a pause this long ends an activity chunk
    chunk_max_events: int = 24
    chunk_close_after_seconds: float = 20.0  # a chunk is summarized once quiet this long
    summarize: bool = True


@dataclass(frozen=True)
class SearchConfig:
    # IANA name ("Europe/Berlin") for "yesterday", "this week"; "" = the machine's
    timezone: str = ""
    context_budget_tokens: int = 2000  # `memoryd context` without --budget
    resident_reader: bool = True  # a small process (no torch) stays up to answer searches,
    # so no search waits for the worker and its models to load (daemon/store/reader.py)
    query_embedder: str = "onnx"  # the reader's: "onnx" (fp32: the stored vectors' own,
    # cosine 1.0), "onnx-int8" (~70 MB smaller, cosine ~0.99) or "router" (torch)
    reader_shed_seconds: float = 60.0  # the reader idle this long gives its clean file
    # pages (native code, mapped weights) back to the page cache; 0 = never
    # (daemon/store/memtrim.py)
    ann_min_rows: int = 10_000  # a table this big gets a vector index (IVF_SQ, built by
    # the worker's optimize; flat search is exact and ~25 ms below it); 0 = never


# Files whose names say they hold secrets: recorded as metadata only (path, kind, time,
# size), their content never read. A glob without "/" matches the file name, one with "/"
# the whole path. `[privacy] secret_files` replaces the list.
SECRET_FILES = (
    ".env", ".env.*", "*.env", "*.pem", "*.key", "id_rsa*", "id_dsa*", "id_ecdsa*",
    "id_ed25519*", ".netrc", "_netrc", ".pgpass", ".npmrc", ".pypirc", ".git-credentials",
    "credentials", "credentials.json", "*/.kube/config", "kubeconfig", "*.kubeconfig",
    "*.p12", "*.pfx", "*.kdbx", "*.jks", "*.keystore", ".htpasswd",
    "*service-account*.json", "*service_account*.json", "*-sa-key.json",
)


@dataclass(frozen=True)
class PrivacyConfig:
    exclude_paths: tuple[str, ...] = ()  # globs: "~/private/*", "*.kdbx"
    exclude_domains: tuple[str, ...] = ()  # "bank.example" and its subdomains
    exclude_commands: tuple[str, ...] = ()  # regular expressions over shell commands
    secret_files: tuple[str, ...] = SECRET_FILES  # metadata only, content never read


@dataclass(frozen=True)
class SyncTarget:
    """One place memory is published to and merged from: [[sync.targets]]."""

    name: str = ""
    url: str = ""  # dir:///mnt/share/memoryd, ssh://user@host:2222/srv/memoryd, http://127.0.0.1:7078
    keep: int = 5  # snapshot generations kept at the target and locally
    max_shrink: float = 0.5  # refuse a snapshot with fewer than (1 - this) x the previous count
    interval_seconds: float = 60.0  # probe interval while the target is up
    max_backoff_seconds: float = 600.0  # longest wait between probes while it is down
    timeout_seconds: float = 20.0  # connect/read timeout; a frozen peer fails after this
    push_every_seconds: float = 0.0  # publish on this schedule; 0 only on `memoryd sync push`
    pull_every_seconds: float = 0.0  # merge the target's snapshot on this schedule; 0: on demand
    token_file: str = ""  # http: file holding the peer daemon's token
    token_env: str = ""  # http: environment variable holding it
    identity_file: str = ""  # ssh: a key to use besides the user's own (~/.ssh, agent)
    known_hosts_file: str = ""  # ssh: a known_hosts to use besides the user's; never unchecked
    endpoint: str = ""  # s3: http(s)://host:port of a non-AWS S3 (SeaweedFS, MinIO); "" = AWS
    region: str = ""  # s3: "" = AWS_REGION / the profile's, else us-east-1
    profile: str = ""  # s3: an AWS profile; "" = AWS_PROFILE or the environment's keys
    access_key_id: str = ""  # s3: "" = AWS_ACCESS_KEY_ID / the profile's
    secret_access_key_env: str = ""  # s3: environment variable holding the secret key
    # whose memories a snapshot from here may bring, as user@device ("bob@laptop");
    # empty = each publisher's own identity as its manifest states it, never our own user
    owners: tuple[str, ...] = ()


@dataclass(frozen=True)
class SyncConfig:
    targets: tuple[SyncTarget, ...] = ()
    context_memories: int = 30  # memories listed in the agent-readable context.md
    # an inbound snapshot is refused whole when one segment decompresses to more than
    # this, or one row of it holds more than max_row_bytes
    max_segment_bytes: int = 64 * 1024 * 1024
    max_row_bytes: int = 1024 * 1024


@dataclass(frozen=True)
class RouterModel:
    """One model the router may send work to: [[router.models]]."""

    name: str = ""  # what requests and routes call it
    backend: str = "openai"  # openai (vLLM, Ollama, llama.cpp server, hosted) | llama_cpp
    endpoint: str = ""  # openai: the base URL, e.g. http://127.0.0.1:8080/v1
    # openai: several replicas of one model (instead of endpoint), one base URL each;
    # requests go to the least busy, a failing one is dropped until its probe answers
    endpoints: tuple[str, ...] = ()
    model: str = ""  # the upstream's name for it (openai) or a manifest name/GGUF (llama_cpp)
    api_key_env: str = ""  # environment variable holding the key; never the key itself
    context_tokens: int = 4096
    usd_per_mtok_in: float = 0.0
    usd_per_mtok_out: float = 0.0
    privacy: str = ""  # local | remote; "" means local for loopback endpoints, else remote
    skills: tuple[str, ...] = ()  # tasks it is good at (compaction, extract, code, ...)
    concurrency: int = 8  # calls at once (per replica with endpoints); more wait their turn
    timeout_seconds: float = 60.0  # whole call, or the first chunk of a stream (per replica)


@dataclass(frozen=True)
class RouterConfig:
    """Routed completions: the model registry, chains per task, fallback and breaker."""

    models: tuple[RouterModel, ...] = ()  # the embedded summarizer and embedder are implicit
    # task -> chain of model names, tried in order (compaction, classify, extract, reasoning,
    # code, default, embed). A task without a chain uses "default"; the built-in default of
    # every chain is the embedded summarizer, so an unconfigured router changes nothing.
    routes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    memory_remote_models: tuple[str, ...] = ()  # remote models allowed to see captured memory
    retries: int = 1  # extra passes over a chain after every model failed
    backoff_seconds: float = 0.2  # wait before a retry pass, doubling each time
    breaker_failures: int = 3  # consecutive failures that open a backend's circuit
    breaker_reset_seconds: float = 15.0  # how long it stays open before a half-open probe
    health_interval_seconds: float = 30.0  # background probes of HTTP backends; 0 disables
    telemetry: bool = True  # record every attempt in <data_dir>/telemetry.sqlite3
    telemetry_keep_days: float = 90.0  # older attempts are deleted; 0 keeps them all


@dataclass(frozen=True)
class StoreConfig:
    """Where the searchable store lives: [store]. The journal, cursors, telemetry and sync
    state always stay in the local data dir."""

    uri: str = ""  # "" = <data_dir>/store; "s3://bucket/prefix" = S3-compatible object storage
    endpoint: str = ""  # http(s)://host:port of a non-AWS S3 (SeaweedFS, MinIO); "" = AWS
    region: str = ""  # "" = AWS_REGION / AWS_DEFAULT_REGION / the profile's, else us-east-1
    allow_http: bool = False  # permit a plain-http endpoint (a LAN or 127.0.0.1 gateway)
    access_key_id: str = ""  # "" = AWS_ACCESS_KEY_ID, or the profile's
    secret_access_key: str = ""  # never printed by `memoryd config`; prefer the environment
    secret_access_key_env: str = ""  # an environment variable holding the secret instead
    profile: str = ""  # an AWS profile (~/.aws/credentials); "" = AWS_PROFILE
    timeout_seconds: float = 20.0  # per request; a dead endpoint fails after this
    retries: int = 2  # per request, before the write is reported as failed (and retried later)
    refresh_seconds: float = 5.0  # how stale reads may be: other daemons' writes show up after this
    check_conditional_writes: bool = True  # refuse an endpoint that ignores If-None-Match
    cache_mb: int = 160  # LanceDB's index and metadata caches, in each process that reads
    # the store (0: LanceDB's own defaults, which grow to GBs on a busy table)
    optimize_rows: int = 2000  # fold new rows into the indexes (and compact) after this many
    cleanup_grace_seconds: float = -1.0  # old table versions kept this long while others
    # may be writing (-1: 0 for a local store, one daemon's; 300 on object storage)


@dataclass(frozen=True)
class CompactionConfig:
    """Chunk summaries and hour→day→week digests (the memory write path)."""

    enabled: bool = True  # write day and week digests
    interval_seconds: float = 3600.0  # how often the daemon looks for new or stale digests
    chunk_max_tokens: int = 160  # a chunk summary's JSON answer (the summary comes first)
    digest_max_tokens: int = 100  # a day digest's answer (two or three sentences)
    yield_cpu_percent: float = 75.0  # the daemon's summaries wait while the machine's CPU is
    # this busy (100 = every core); 0 never waits. `ingest --once` never waits.
    yield_on_battery: bool = True  # ... and while the laptop runs on battery
    max_defer_seconds: float = 1800.0  # after waiting this long a job runs anyway
    max_cpu_percent: float = 25.0  # the daemon's summaries and digests use at most this
    # share of the machine's CPU (100 = every core), averaged; 0 = no limit. Not for
    # `ingest --once`. Newest chunks go first: today, then the last days, then older.
    retain_events_days: int = 0  # raw events older than this leave the store (digests and
    # chunk memories stay); 0 keeps every event
    chunk_model: str = "never"  # which chunks the model reads: "never" (chunk memories are
    # extracted from their events alone; the model writes the digests' prose), "stated"
    # (chunks whose own events state a decision or task: it may add a topic line and
    # those) or "always"
    model_every_chunk: bool = False  # older name: true means chunk_model = "always"

    @property
    def chunk_model_mode(self) -> str:
        return "always" if self.model_every_chunk else self.chunk_model


@dataclass(frozen=True)
class ApprovalsConfig:
    """Human approval of routed completions: [approvals]. A request that needs it waits
    until the user approves or denies it (`memoryd approvals`, `memoryd approve ID`,
    `memoryd deny ID`, the status page, the tray); no answer within the timeout denies it."""

    tasks: tuple[str, ...] = ()  # tasks that always need approval, e.g. ["deploy"]
    irreversible: bool = True  # requests the caller marks irreversible (field or header)
    memory_remote: bool = False  # ask, instead of skipping or refusing, when captured memory
    # would go to a remote model not in router.memory_remote_models
    max_cost_usd: float = 0.0  # an estimated cost above this needs approval; 0 = no limit
    timeout_seconds: float = 300.0  # unanswered this long means denied
    keep_days: int = 90  # decisions older than this leave <data_dir>/approvals.sqlite3
    reattach_seconds: float = 300.0  # after a restart, a request sent with an
    # Idempotency-Key stays pending this long (at most until its timeout) for its caller
    # to send it again and get the answer; then it is recorded abandoned


@dataclass(frozen=True)
class IdentityConfig:
    """Who this daemon writes as: [identity]. Every event and memory it stores carries
    both, so several daemons can share one store and tokens can be limited to owners."""

    device: str = ""  # "" = this machine's hostname; letters, digits and . _ @ + -
    user: str = ""  # "" = the login name


@dataclass(frozen=True)
class Config:
    data_dir: str = ""
    collectors: CollectorsConfig = field(default_factory=CollectorsConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    compaction: CompactionConfig = field(default_factory=CompactionConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    router: RouterConfig = field(default_factory=RouterConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    approvals: ApprovalsConfig = field(default_factory=ApprovalsConfig)
    source: str = ""  # the file this came from, "" for defaults only

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser()

    @property
    def models_path(self) -> Path:
        return Path(self.models.dir).expanduser() if self.models.dir else self.data_path / "models"

    @property
    def socket_path(self) -> Path:
        return self.data_path / "memoryd.sock"

    @property
    def token_path(self) -> Path:
        return self.data_path / "token"


def load_config(path: str | Path | None = None) -> Config:
    """Given a config path (or None for the default one), return the effective config.

    A missing default file means defaults; a missing file named explicitly is an error.
    Raise ConfigError, naming the file and key, if the TOML is malformed or a key is wrong.
    """
    explicit = path is not None
    cfg_path = Path(path).expanduser() if path is not None else default_config_path()
    table: dict[str, Any] = {}
    if cfg_path.exists():
        try:
            table = tomllib.loads(cfg_path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"{cfg_path} is not valid TOML: {exc}. Fix the file or move it aside.") from None
    elif explicit:
        raise ConfigError(f"config file {cfg_path} does not exist; create it or drop --config")
    try:
        cfg = build_dataclass(Config, table, "")
    except ConfigError as exc:
        raise ConfigError(f"{cfg_path}: {exc}") from None
    if cfg.compaction.chunk_model not in CHUNK_MODEL_MODES:
        raise ConfigError(f"{cfg_path}: [compaction] chunk_model = {cfg.compaction.chunk_model!r}"
                          f" is not one of {', '.join(CHUNK_MODEL_MODES)}")
    if cfg.models.embedder_runtime not in EMBEDDER_RUNTIMES:
        raise ConfigError(f"{cfg_path}: [models] embedder_runtime = "
                          f"{cfg.models.embedder_runtime!r} is not one of "
                          f"{', '.join(EMBEDDER_RUNTIMES)}")
    if not 0 <= cfg.pipeline.worker_nice <= 19:
        raise ConfigError(f"{cfg_path}: [pipeline] worker_nice = {cfg.pipeline.worker_nice} "
                          "is not between 0 (as the daemon) and 19 (the most polite)")
    data_dir = cfg.data_dir or str(default_data_dir())
    from daemon.owners import resolve_identity

    try:  # resolved once here, so `memoryd config` shows who this daemon writes as
        device, user = resolve_identity(cfg.identity.device, cfg.identity.user)
    except ConfigError as exc:
        raise ConfigError(f"{cfg_path}: {exc}") from None
    return replace(cfg, data_dir=str(Path(data_dir).expanduser().resolve()),
                   identity=IdentityConfig(device=device, user=user),
                   source=str(cfg_path) if cfg_path.exists() else "")


CHUNK_MODEL_MODES = ("never", "stated", "always")
EMBEDDER_RUNTIMES = ("onnx", "torch")
SECRET_KEYS = ("secret_access_key",)  # masked when the config is printed


def config_as_dict(cfg: Config) -> dict[str, Any]:
    """Return the config as plain TOML-ready data (tuples become lists)."""

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: ("***" if k in SECRET_KEYS and v else clean(v))
                    for k, v in value.items() if k != "source"}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    return clean(asdict(cfg))
