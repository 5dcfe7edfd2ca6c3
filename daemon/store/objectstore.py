"""S3-compatible object storage: settings, credentials and the one capability check.

Given a `[store]` section or an `s3://` sync target, `S3Settings` resolves the endpoint,
region and credentials (config first, then the usual AWS environment variables or
`AWS_PROFILE`) and hands them to LanceDB (`storage_options`) or to boto3 (`client`).

Why conditional writes matter: Lance commits a table version by writing manifest N+1
with `If-None-Match: *`. Two daemons committing at once then get one winner and one
412, and the loser rebases and retries. An endpoint that ignores the header lets both
writes land and one commit silently disappears, so `check_conditional_writes` refuses such
an endpoint at open time instead of losing memories later. (AWS S3 supports it since
2024-11, SeaweedFS enforces it atomically since 4.17, MinIO and R2 support it; an S3
without it would need an external commit lock such as DynamoDB, which memoryd does not
build.)
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from daemon.errors import ConfigError, PermanentError, RetryableError

log = logging.getLogger(__name__)


class ObjectStoreUnavailable(RetryableError):
    """The object storage did not answer; what was being written stays queued."""


@dataclass(frozen=True)
class S3Settings:
    bucket: str
    prefix: str  # no leading or trailing slash
    endpoint: str = ""
    region: str = ""
    allow_http: bool = False
    access_key_id: str = ""
    secret_access_key: str = ""
    session_token: str = ""
    timeout_seconds: float = 20.0
    retries: int = 2

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    @property
    def where(self) -> str:
        """Where it is, for messages: the URI and the endpoint (never a key)."""
        return f"{self.uri} at {self.endpoint or 'AWS S3'}"

    def storage_options(self) -> dict[str, str]:
        """LanceDB / object_store options."""
        opts = {
            "aws_region": self.region or "us-east-1",
            "timeout": f"{self.timeout_seconds:g}s",
            "connect_timeout": f"{min(self.timeout_seconds, 5.0):g}s",
            "client_max_retries": str(self.retries),
            "client_retry_timeout": str(max(1, int(self.timeout_seconds * (self.retries + 1)))),
        }
        if self.endpoint:
            opts["aws_endpoint"] = self.endpoint
            # most self-hosted gateways serve path-style URLs only
            opts["aws_virtual_hosted_style_request"] = "false"
        if self.allow_http:
            opts["allow_http"] = "true"
        if self.access_key_id:
            opts["aws_access_key_id"] = self.access_key_id
            opts["aws_secret_access_key"] = self.secret_access_key
            if self.session_token:
                opts["aws_session_token"] = self.session_token
        return opts

    def client(self) -> Any:
        """A boto3 S3 client for these settings; raise ConfigError if boto3 is missing."""
        try:
            import boto3
            from botocore.config import Config as BotoConfig
        except ImportError:
            raise ConfigError("object storage needs boto3: install memoryd with the s3 extra "
                              "(pip install 'memoryd[s3]')") from None
        return boto3.client(
            "s3", endpoint_url=self.endpoint or None, region_name=self.region or "us-east-1",
            aws_access_key_id=self.access_key_id or None,
            aws_secret_access_key=self.secret_access_key or None,
            aws_session_token=self.session_token or None,
            config=BotoConfig(connect_timeout=min(self.timeout_seconds, 5.0),
                              read_timeout=self.timeout_seconds,
                              retries={"max_attempts": self.retries + 1, "mode": "standard"},
                              s3={"addressing_style": "path"} if self.endpoint else None))


def parse_s3_url(url: str) -> tuple[str, str]:
    """Given `s3://bucket/prefix`, return (bucket, prefix); raise ConfigError otherwise."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ConfigError(f"{url!r} is not an s3://bucket/prefix URL")
    if parts.query or parts.fragment:
        raise ConfigError(f"{url!r}: put the endpoint and keys in the config, not the URL")
    return parts.netloc, parts.path.strip("/")


def resolve(url: str, *, endpoint: str = "", region: str = "", allow_http: bool | None = None,
            access_key_id: str = "", secret_access_key: str = "",
            secret_access_key_env: str = "", profile: str = "",
            timeout_seconds: float = 20.0, retries: int = 2) -> S3Settings:
    """Resolve settings: explicit values, then AWS_* environment variables, then the
    profile (`profile` or AWS_PROFILE) through botocore. Raise ConfigError with what to
    set when no credentials are found."""
    bucket, prefix = parse_s3_url(url)
    if endpoint:
        ep = urlsplit(endpoint)
        if ep.scheme not in ("http", "https") or not ep.hostname:
            raise ConfigError(f"endpoint {endpoint!r} must look like http(s)://host:port")
        try:
            ep.port  # noqa: B018 - a bad port panics inside the Rust client, check it here
        except ValueError:
            raise ConfigError(f"endpoint {endpoint!r} has an invalid port") from None
        if ep.scheme == "http" and allow_http is False:
            raise ConfigError(f"endpoint {endpoint!r} is plain http: set allow_http = true "
                              "to permit it (only on a trusted network)")
    secret = secret_access_key
    if secret_access_key_env:
        secret = os.environ.get(secret_access_key_env, "")
        if not secret:
            raise ConfigError(f"environment variable {secret_access_key_env} is empty; "
                              "export the secret key there")
    key_id = access_key_id
    token = ""
    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION", "")
    if not key_id:
        key_id = os.environ.get("AWS_ACCESS_KEY_ID", "")
        secret = secret or os.environ.get("AWS_SECRET_ACCESS_KEY", "")
        token = os.environ.get("AWS_SESSION_TOKEN", "")
    profile = profile or os.environ.get("AWS_PROFILE", "")
    if not key_id and profile:
        key_id, secret, token, region = _from_profile(profile, region)
    if not key_id or not secret:
        raise ConfigError(f"no credentials for {url}: set access_key_id and "
                          "secret_access_key_env, or AWS_ACCESS_KEY_ID and "
                          "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE")
    return S3Settings(bucket=bucket, prefix=prefix, endpoint=endpoint.rstrip("/"),
                      region=region, allow_http=bool(allow_http) or endpoint.startswith("http:"),
                      access_key_id=key_id, secret_access_key=secret, session_token=token,
                      timeout_seconds=timeout_seconds, retries=retries)


def _from_profile(profile: str, region: str) -> tuple[str, str, str, str]:
    try:
        import botocore.session
        from botocore.exceptions import ProfileNotFound
    except ImportError:
        raise ConfigError("AWS profiles need boto3: pip install 'memoryd[s3]'") from None
    try:
        session = botocore.session.Session(profile=profile)
        creds = session.get_credentials()
    except ProfileNotFound:
        raise ConfigError(f"AWS profile {profile!r} is not in ~/.aws/credentials or "
                          "~/.aws/config") from None
    if creds is None:
        raise ConfigError(f"AWS profile {profile!r} has no credentials")
    frozen = creds.get_frozen_credentials()
    return (frozen.access_key, frozen.secret_key, frozen.token or "",
            region or session.get_config_variable("region") or "")


def store_settings(store_cfg: Any) -> S3Settings:
    """The settings of a `[store]` section whose uri is s3://."""
    return resolve(store_cfg.uri, endpoint=store_cfg.endpoint, region=store_cfg.region,
                   allow_http=store_cfg.allow_http, access_key_id=store_cfg.access_key_id,
                   secret_access_key=store_cfg.secret_access_key,
                   secret_access_key_env=store_cfg.secret_access_key_env,
                   profile=store_cfg.profile, timeout_seconds=store_cfg.timeout_seconds,
                   retries=store_cfg.retries)


def check_conditional_writes(s: S3Settings) -> None:
    """Write a probe object twice with `If-None-Match: *` and expect the second refused.

    Raise PermanentError if the endpoint ignores the condition (several writers would
    lose commits), ObjectStoreUnavailable if it cannot be reached."""
    from botocore.exceptions import BotoCoreError, ClientError

    client = s.client()
    key = "/".join(p for p in (s.prefix, f".memoryd-probe-{uuid.uuid4().hex}") if p)
    try:
        client.put_object(Bucket=s.bucket, Key=key, Body=b"1", IfNoneMatch="*")
        try:
            client.put_object(Bucket=s.bucket, Key=key, Body=b"2", IfNoneMatch="*")
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status in (409, 412) or code in ("PreconditionFailed",
                                                "ConditionalRequestConflict"):
                return
            raise
        raise PermanentError(
            f"{s.where} ignores conditional writes (If-None-Match), so two daemons writing "
            "the store at once could lose commits. Use an S3 that supports them (AWS S3, "
            "SeaweedFS >= 4.17, MinIO, R2) or, with a single writer only, set "
            "[store] check_conditional_writes = false")
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchBucket",):
            raise ConfigError(f"bucket {s.bucket!r} does not exist at "
                              f"{s.endpoint or 'AWS S3'}; create it first") from None
        if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            raise PermanentError(f"{s.where} refused the credentials ({code}); check the "
                                 "access key and secret") from None
        raise ObjectStoreUnavailable(f"{s.where} failed the write check: {code}") from exc
    except BotoCoreError as exc:
        raise ObjectStoreUnavailable(f"{s.where} cannot be reached: {exc}") from exc
    finally:
        try:
            client.delete_object(Bucket=s.bucket, Key=key)
        except Exception:
            pass


def settings_from_options(uri: str, opts: dict[str, str]) -> S3Settings:
    """The settings behind LanceDB `storage_options` (the inverse of `storage_options`),
    for a store opened with options only."""
    bucket, prefix = parse_s3_url(uri)
    return S3Settings(bucket=bucket, prefix=prefix, endpoint=opts.get("aws_endpoint", ""),
                      region=opts.get("aws_region", ""),
                      allow_http=opts.get("allow_http") == "true",
                      access_key_id=opts.get("aws_access_key_id", ""),
                      secret_access_key=opts.get("aws_secret_access_key", ""),
                      session_token=opts.get("aws_session_token", ""))
