"""An S3 target (`s3://bucket/prefix`) on AWS S3 or any S3-compatible store (SeaweedFS,
MinIO, R2), through boto3.

Atomic replace is S3's own: a single PUT either lands whole or not at all, and readers
see the old object until it does. The PUT carries Content-MD5 (the server refuses a body
that arrives damaged) and the SHA-256 in the object's metadata; `get` checks that again,
so a snapshot file is never merged from a torn or altered copy. Endpoint and keys come
from the target's own fields, then the usual AWS environment variables or AWS_PROFILE.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from typing import Any

from daemon.config import SyncTarget
from daemon.store.objectstore import S3Settings, resolve
from daemon.sync.transport import (
    TargetFull,
    TargetRejected,
    TransportError,
    check_name,
    masked_url,
    sha256,
)

log = logging.getLogger(__name__)
_REJECTED = ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "NoSuchBucket",
             "AllAccessDisabled", "InvalidBucketName", "403")
_FULL = ("EntityTooLarge", "QuotaExceeded", "XMinioStorageFull", "InsufficientStorage", "507")
SHA_META = "sha256"


class S3Transport:
    def __init__(self, target: SyncTarget, settings: S3Settings | None = None) -> None:
        self.url = masked_url(target.url)
        self.s = settings or resolve(
            target.url, endpoint=target.endpoint, region=target.region,
            allow_http=target.endpoint.startswith("http:") or None,
            access_key_id=target.access_key_id,
            secret_access_key_env=target.secret_access_key_env, profile=target.profile,
            timeout_seconds=max(1.0, target.timeout_seconds), retries=1)
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self.s.client()
        return self._client

    def _key(self, name: str) -> str:
        return f"{self.s.prefix}/{name}" if self.s.prefix else name

    def _fail(self, what: str, exc: Exception) -> TransportError:
        """Map a boto3 error to the transport's errors, with what to do."""
        from botocore.exceptions import ClientError

        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            if code in _REJECTED or status == "403":
                raise TargetRejected(f"{self.s.where} refused {what} ({code}): check the "
                                     "bucket name and the credentials") from exc
            if code in _FULL or status == "507":
                return TargetFull(f"{self.s.where} has no room for {what} ({code}); free "
                                  "space or raise the quota, the previous snapshot is untouched")
            return TransportError(f"{what} at {self.s.where} failed: {code} "
                                  f"{err.get('Message', '')}".rstrip())
        return TransportError(f"{self.s.where} cannot be reached for {what}: {exc}")

    def probe(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=self.s.bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket"):
                raise TargetRejected(f"bucket {self.s.bucket!r} does not exist at "
                                     f"{self.s.endpoint or 'AWS S3'}; create it first") from exc
            raise self._fail("a probe", exc) from exc
        except BotoCoreError as exc:
            raise self._fail("a probe", exc) from exc

    def get(self, name: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        key = self._key(check_name(name))
        try:
            obj = self.client.get_object(Bucket=self.s.bucket, Key=key)
            data: bytes = obj["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise FileNotFoundError(f"{self.url}/{name}") from None
            raise self._fail(f"reading {name}", exc) from exc
        except BotoCoreError as exc:
            raise self._fail(f"reading {name}", exc) from exc
        want = (obj.get("Metadata") or {}).get(SHA_META)
        if want and want != sha256(data):
            raise TransportError(f"{name} at {self.s.where} does not match its checksum "
                                 "(torn or altered); it is not used")
        return data

    def put(self, name: str, data: bytes) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        key = self._key(check_name(name))
        md5 = hashlib.md5(data, usedforsecurity=False)
        try:
            resp = self.client.put_object(
                Bucket=self.s.bucket, Key=key, Body=data,
                ContentMD5=base64.b64encode(md5.digest()).decode(),
                Metadata={SHA_META: sha256(data)})
        except (ClientError, BotoCoreError) as exc:
            raise self._fail(f"writing {name} ({len(data)} bytes)", exc) from exc
        etag = str(resp.get("ETag", "")).strip('"')
        if etag and "-" not in etag and etag != md5.hexdigest():
            raise TransportError(f"{name} at {self.s.where} did not land as sent "
                                 f"(ETag {etag} != MD5 {md5.hexdigest()})")

    def list(self) -> list[str]:
        from botocore.exceptions import BotoCoreError, ClientError

        prefix = f"{self.s.prefix}/" if self.s.prefix else ""
        names: list[str] = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.s.bucket, Prefix=prefix, Delimiter="/")
            for page in pages:
                for item in page.get("Contents", []):
                    name = item["Key"][len(prefix):]
                    try:
                        names.append(check_name(name))
                    except ValueError:
                        continue  # not ours (a probe, a folder marker)
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("listing", exc) from exc
        return sorted(names)

    def delete(self, name: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.delete_object(Bucket=self.s.bucket, Key=self._key(check_name(name)))
        except (ClientError, BotoCoreError) as exc:
            raise self._fail(f"deleting {name}", exc) from exc
