"""Where finished MP3s live: in the database (the embedded default) or in an S3-compatible bucket.

`MEDIA_STORE=database|s3` picks the store. Both implement `MediaStore`. Playback asks a store for a presigned URL
first (S3 then serves the bytes, ranges and all, and this service only redirects); a store that cannot presign
(the database, or S3 with `S3_PRESIGN=false`) is read through `get` (database) or `open` (S3, streamed).
"""

from __future__ import annotations

import io
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast, runtime_checkable

from flask import Flask, current_app
from sqlalchemy import Engine, delete, func, select

from ..config import ConfigError
from ..extensions import db
from ..models import StoredMedia

if TYPE_CHECKING:  # types only: boto3's client classes are generated at run time
    from botocore.exceptions import ClientError
    from botocore.response import StreamingBody
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import GetObjectRequestTypeDef
    from typing_extensions import Buffer  # collections.abc.Buffer from Python 3.12

log = logging.getLogger(__name__)

STORES = ("database", "s3")
STREAM_CHUNK_BYTES = 64 * 1024
# One database read while serving a stored file: what one playback request holds in memory, whatever the file size.
DATABASE_READ_BYTES = 256 * 1024
MULTIPART_THRESHOLD_BYTES = 8 * 1024 * 1024
S3_PRESIGN_MAX_TTL_S = 7 * 24 * 3600  # SigV4's own limit


@dataclass
class StoredObject:
    key: str
    content_type: str
    size_bytes: int
    sha256: str
    data: bytes


@runtime_checkable
class MediaStore(Protocol):
    def put(self, key: str, path: str, content_type: str, sha256: str) -> None:
        """Store the file at `path` under `key` (overwriting)."""

    def get(self, key: str) -> StoredObject | None:
        """The whole object in memory, or None when it does not exist."""

    def delete(self, key: str) -> None:
        """Remove the object; a key that is already gone is not an error."""

    def presigned_url(self, key: str, ttl_s: int) -> str | None:
        """A URL anyone can GET for `ttl_s` seconds, or None when this store cannot hand one out."""


@runtime_checkable
class SeekableStore(MediaStore, Protocol):
    """A store that cannot presign and whose bytes this service serves itself, seeking through them as through a
    file on disk (Range/206 from Werkzeug)."""

    def stat(self, key: str) -> StoredInfo | None:
        """What is stored under `key`, without its bytes; None when it does not exist."""

    def open(self, info: StoredInfo) -> io.RawIOBase:
        """A seekable reader over the stored bytes that `stat` described."""


class DatabaseStore:
    """Joins the caller's transaction: the MP3 and its audit row commit together or not at all."""

    def put(self, key: str, path: str, content_type: str, sha256: str) -> None:
        with open(path, "rb") as handle:
            data = handle.read()
        db.session.merge(
            StoredMedia(key=key, content_type=content_type, size_bytes=len(data), sha256=sha256, data=data)
        )

    def get(self, key: str) -> StoredObject | None:
        row = db.session.scalar(select(StoredMedia).where(StoredMedia.key == key))
        if row is None:
            return None
        return StoredObject(row.key, row.content_type, row.size_bytes, row.sha256, row.data)

    def delete(self, key: str) -> None:
        db.session.execute(delete(StoredMedia).where(StoredMedia.key == key))

    def presigned_url(self, key: str, ttl_s: int) -> str | None:
        return None

    def stat(self, key: str) -> StoredInfo | None:
        """What is stored under `key`, without its bytes."""
        row = db.session.execute(
            select(StoredMedia.key, StoredMedia.content_type, StoredMedia.size_bytes, StoredMedia.sha256).where(
                StoredMedia.key == key
            )
        ).first()
        return StoredInfo(*row) if row else None

    def open(self, info: StoredInfo) -> DatabaseReader:
        # The reader outlives the request's app context (the server iterates the body after the view returned),
        # so it keeps the engine, not the session.
        return DatabaseReader(db.engine, info)


def read_stored_slice(engine: Engine, key: str, offset: int, length: int) -> bytes:
    """`length` bytes from `offset` of a stored file, reading no more of it than that.

    Each read takes a pooled connection only for its query, so a slow client holds memory for one read and no
    connection between reads. SQLite's substr() would load the whole blob; its incremental blob I/O reads just the
    pages asked for. PostgreSQL's substr() reads only the TOAST chunks it needs, as the column is stored
    uncompressed (migration 0008).
    """
    with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            rowid = connection.exec_driver_sql("SELECT rowid FROM stored_media WHERE key = ?", (key,)).scalar()
            if rowid is None:
                return b""
            # The sqlite dialect's driver connection is the standard library's; SQLAlchemy types it as Any.
            driver = cast(sqlite3.Connection, connection.connection.driver_connection)
            with driver.blobopen("stored_media", "data", rowid, readonly=True) as blob:
                blob.seek(offset)
                return blob.read(length)
        data = connection.scalar(
            select(func.substr(StoredMedia.data, offset + 1, length)).where(StoredMedia.key == key)
        )
        return bytes(data or b"")


@dataclass
class StoredInfo:
    key: str
    content_type: str
    size_bytes: int
    sha256: str


class DatabaseReader(io.RawIOBase):
    """A seekable file over one stored blob that reads it DATABASE_READ_BYTES at a time: Werkzeug's range
    handling seeks and reads it as it would a file on disk."""

    def __init__(self, engine: Engine, info: StoredInfo) -> None:
        super().__init__()
        self.engine, self.info = engine, info
        self._position = 0
        self._buffer, self._buffer_start = b"", 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.info.size_bytes}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, target: Buffer) -> int:
        if self._position >= self.info.size_bytes:
            return 0
        offset = self._position - self._buffer_start
        if not 0 <= offset < len(self._buffer):
            self._buffer = read_stored_slice(self.engine, self.info.key, self._position, DATABASE_READ_BYTES)
            self._buffer_start, offset = self._position, 0
            if not self._buffer:
                return 0
        view = memoryview(target).cast("B")
        count = min(len(view), len(self._buffer) - offset)
        view[:count] = self._buffer[offset : offset + count]
        self._position += count
        return count


@dataclass
class StreamedObject:
    """An S3 object (or one byte range of it) being read: iterate `chunks()`, then it closes itself."""

    status: int  # 200, 206, 304 or 416
    content_type: str | None = None
    content_length: int | None = None
    content_range: str | None = None
    etag: str | None = None
    sha256: str | None = None
    last_modified: datetime | None = None
    body: StreamingBody | None = None

    def chunks(self) -> Iterator[bytes]:
        if self.body is None:
            return
        try:
            yield from self.body.iter_chunks(STREAM_CHUNK_BYTES)
        finally:
            self.close()

    def close(self) -> None:
        if self.body is not None:
            self.body.close()
            self.body = None


class S3Store:
    """An S3-compatible bucket (AWS S3, MinIO, Cloudflare R2, moto). Writes are immediate, not transactional.

    Credentials come from boto3's own chain (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, a profile, an instance
    role). Object names are `prefix + key`.
    """

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        public_endpoint_url: str | None = None,
        region: str | None = None,
        presign: bool = True,
    ):
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint_url = endpoint_url
        self.public_endpoint_url = public_endpoint_url
        self.region = region
        self.presign = presign
        self._clients: dict[tuple[int, str | None], S3Client] = {}
        self._lock = threading.Lock()

    # -- clients ----------------------------------------------------------------------------------------
    def _client(self, endpoint_url: str | None = None) -> S3Client:
        """One boto3 client per process and endpoint: clients are thread-safe, but not safe across RQ's fork."""
        endpoint_url = endpoint_url or self.endpoint_url
        cache_key = (os.getpid(), endpoint_url)
        client = self._clients.get(cache_key)
        if client is None:
            with self._lock:
                client = self._clients.get(cache_key)
                if client is None:
                    import boto3  # only the S3 store needs boto3, and importing it costs most of a second
                    from botocore.config import Config as BotoConfig  # as boto3

                    # MinIO and most S3 look-alikes want path-style addressing; AWS picks for itself.
                    style: Literal["path", "auto"] = "path" if endpoint_url else "auto"
                    config = BotoConfig(
                        signature_version="s3v4",
                        s3={"addressing_style": style},
                        retries={"max_attempts": 4, "mode": "standard"},
                        connect_timeout=5,
                        read_timeout=30,
                    )
                    client = boto3.session.Session().client(
                        "s3", endpoint_url=endpoint_url, region_name=self.region, config=config
                    )
                    self._clients[cache_key] = client
        return client

    def object_name(self, key: str) -> str:
        return self.prefix + key

    # -- MediaStore -------------------------------------------------------------------------------------
    def put(self, key: str, path: str, content_type: str, sha256: str) -> None:
        from boto3.s3.transfer import TransferConfig  # as boto3 above

        # upload_file switches to a multipart upload (parts in parallel) above the threshold.
        transfer = TransferConfig(
            multipart_threshold=MULTIPART_THRESHOLD_BYTES, multipart_chunksize=MULTIPART_THRESHOLD_BYTES
        )
        self._client().upload_file(
            path,
            self.bucket,
            self.object_name(key),
            Config=transfer,
            ExtraArgs={"ContentType": content_type, "Metadata": {"sha256": sha256}},
        )

    def get(self, key: str) -> StoredObject | None:
        obj = self.open(key)
        if obj is None:
            return None
        data = b"".join(obj.chunks())
        return StoredObject(key, obj.content_type or "application/octet-stream", len(data), obj.sha256 or "", data)

    def delete(self, key: str) -> None:
        from botocore.exceptions import ClientError  # as boto3 above

        try:
            # S3 answers 204 for a missing key too; some look-alikes answer NoSuchKey.
            self._client().delete_object(Bucket=self.bucket, Key=self.object_name(key))
        except ClientError as exc:
            if _error_code(exc) not in ("NoSuchKey", "404", "NotFound"):
                raise

    def presigned_url(self, key: str, ttl_s: int) -> str | None:
        if not self.presign:
            return None
        ttl_s = max(1, min(int(ttl_s), S3_PRESIGN_MAX_TTL_S))
        client = self._client(self.public_endpoint_url)
        return client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self.object_name(key)}, ExpiresIn=ttl_s
        )

    # -- streaming fallback -----------------------------------------------------------------------------
    def open(
        self, key: str, range_header: str | None = None, if_none_match: str | None = None
    ) -> StreamedObject | None:
        """GET the object, passing a single `Range` through to S3; None when the object does not exist.

        The ETag is the object's sha256 (from its metadata) so it matches the database store's; S3's own ETag
        (an MD5, or a multipart hash) is only the fallback.
        """
        from botocore.exceptions import ClientError  # as boto3 above

        params: GetObjectRequestTypeDef = {"Bucket": self.bucket, "Key": self.object_name(key)}
        if range_header:
            params["Range"] = range_header
        try:
            response = self._client().get_object(**params)
        except ClientError as exc:
            code = _error_code(exc)
            if code in ("NoSuchKey", "404", "NotFound"):
                return None
            if code == "InvalidRange":
                size = exc.response.get("Error", {}).get("ActualObjectSize")
                return StreamedObject(status=416, content_range=f"bytes */{size}" if size else None)
            raise
        metadata = response.get("Metadata") or {}
        etag = f'"{metadata["sha256"]}"' if metadata.get("sha256") else response.get("ETag")
        obj = StreamedObject(
            status=206 if response.get("ContentRange") else 200,
            content_type=response.get("ContentType"),
            content_length=response.get("ContentLength"),
            content_range=response.get("ContentRange"),
            etag=etag,
            sha256=metadata.get("sha256"),
            last_modified=response.get("LastModified"),
            body=response["Body"],
        )
        if if_none_match and etag and _etag_matches(if_none_match, etag):
            obj.close()
            return StreamedObject(status=304, etag=etag, last_modified=obj.last_modified)
        return obj


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _etag_matches(header: str, etag: str) -> bool:
    wanted = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return "*" in wanted or etag in wanted


def build_store(config: Mapping[str, Any]) -> MediaStore:
    kind = str(config.get("MEDIA_STORE") or "database").strip().lower()
    if kind not in STORES:
        raise ConfigError(f"MEDIA_STORE={kind!r} is not one of {', '.join(STORES)}")
    if kind == "database":
        return DatabaseStore()
    if not config.get("S3_BUCKET"):
        raise ConfigError("MEDIA_STORE=s3 needs S3_BUCKET")
    prefix = config.get("S3_PREFIX")
    return S3Store(
        config["S3_BUCKET"],
        prefix=prefix or "",
        endpoint_url=config.get("S3_ENDPOINT_URL") or None,
        public_endpoint_url=config.get("S3_PUBLIC_ENDPOINT_URL") or None,
        region=config.get("S3_REGION") or None,
        presign=bool(config.get("S3_PRESIGN", True)),
    )


def init_app(app: Flask) -> None:
    app.extensions["media_store"] = build_store(app.config)


def media_store() -> MediaStore:
    store: MediaStore = current_app.extensions["media_store"]  # set by init_app above
    return store
