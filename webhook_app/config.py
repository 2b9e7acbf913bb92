"""One Config object, read from the environment (12-factor). README has the table."""

from __future__ import annotations

import math
import os
import re
import secrets
from typing import TypeVar
from urllib.parse import parse_qs, urlsplit

from flask import Flask
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off"}
LOG_FORMATS = ("json", "text")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# CTranslate2's compute types on CPU (int8 is the fastest and smallest; float32 the reference).
COMPUTE_TYPES = ("int8", "int8_float32", "int16", "float32", "auto")
# What a number's name says it counts, for the example in its error: UPLOAD_MAX_BYTES='100MB' wants bytes.
UNITS = (("_BYTES", "bytes"), ("_DAYS", "days"), ("_S", "seconds"))
DATABASE_URL_FORM = "postgres://user:password@host:5432/dbname or sqlite:////absolute/path.db; unset: instance/'s"
REDIS_SCHEMES = ("redis", "rediss", "unix")
REDIS_URL_FORM = "redis://[:password@]host[:port][/db], rediss://… or unix:///path/to/socket[?db=N]; db is a number"


class ConfigError(ValueError, RuntimeError):
    """A setting the service cannot run with, in one line naming the variable and the form it wants. Every entry
    point (gunicorn, flask, alembic) prints that line alone and exits non-zero (runtime/startup.py). Both a
    ValueError and a RuntimeError: the checks raised one or the other before, and callers catch those."""


def env_bool(name: str, default: bool) -> bool:
    """Explicit boolean parsing: a typo must not silently read as False; set but empty is the default."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean (use true/false)")


Number = TypeVar("Number", int, float)


def env_int(name: str, default: int, minimum: int = 0) -> int:
    """An integer of at least `minimum`: a negative retry count or hop count must stop the start-up, not
    quietly turn the feature off."""
    return _env_number(name, default, int, minimum)


def env_float(name: str, default: float, minimum: float = 0.0) -> float:
    return _env_number(name, default, float, minimum)


def _env_number(name: str, default: Number, kind: type[Number], minimum: Number) -> Number:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        unit = next((f"{unit}, " for suffix, unit in UNITS if name.endswith(suffix)), "")
        example = default if kind is int else f"{default:g}"
        what = "an integer" if kind is int else "a number"
        raise ConfigError(f"{name}={raw!r} is not {what} ({unit}e.g. {example})") from None
    if not math.isfinite(value) or value < minimum:
        raise ConfigError(f"{name}={raw!r} must be a finite number of at least {minimum:g}")
    return value


def env_choice(name: str, default: str, choices: tuple[str, ...], *, upper: bool = False) -> str:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().upper() if upper else raw.strip().lower()
    if value not in choices:
        raise ConfigError(f"{name}={raw!r} is not one of {', '.join(choices)}")
    return value


def normalize_database_url(url: str) -> str:
    """Heroku hands out postgres:// URLs, which SQLAlchemy 2 refuses; we use psycopg 3."""
    if url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url[len("postgres://") :]
    elif url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def checked_database_url(raw: str) -> str:
    """DATABASE_URL for SQLAlchemy, or "" for the instance/ default. Refused here when malformed: SQLAlchemy's own
    error, at the first query, names neither the variable nor the form it wants."""
    if not raw:
        return ""
    url = normalize_database_url(raw)
    try:
        make_url(url).get_dialect()  # loads the dialect's module only, not its driver
    except (ArgumentError, ValueError):  # unparsable, an unknown kind of database, a port that is no number
        raise ConfigError(
            f"DATABASE_URL={hide_password(raw)!r} is not a database URL (expected {DATABASE_URL_FORM})"
        ) from None
    return url


def checked_redis_url(raw: str | None) -> str | None:
    """REDIS_URL, refused unless redis-py would use exactly what it says: given `/9x` for the database, redis-py
    quietly takes database 0, where another application's keys may live."""
    if not raw:
        return None
    parts = urlsplit(raw)
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is no number
        databases = parse_qs(parts.query).get("db", [])
        if parts.scheme != "unix" and parts.path.replace("/", ""):
            databases.append(parts.path.replace("/", ""))  # what redis-py reads as the database
        well_formed = parts.scheme in REDIS_SCHEMES and all(d.isascii() and d.isdigit() for d in databases)
    except ValueError:
        well_formed = False
    if not well_formed or (parts.scheme == "unix" and not parts.path):
        raise ConfigError(f"REDIS_URL={hide_password(raw)!r} is not a Redis URL (expected {REDIS_URL_FORM})")
    return raw


def hide_password(url: str) -> str:
    """The URL as an error may show it (logs keep errors): user and password, up to the last @, hidden."""
    return re.sub(r"^([^/@]*//)?.*@", lambda match: (match.group(1) or "") + "***@", url)


def instance_path() -> str:
    """The Flask instance folder (what create_app() uses), created if missing."""
    path = Flask("webhook_app", instance_relative_config=True).instance_path
    os.makedirs(path, exist_ok=True)
    return path


def default_database_url() -> str:
    """The embedded default: a SQLite file in the Flask instance folder."""
    return "sqlite:///" + os.path.join(instance_path(), "webhook_app.db")


def instance_secret_key(directory: str | None = None) -> str:
    """The sandbox's SECRET_KEY when none is set: made once and kept in the instance folder, so gunicorn's worker
    processes (and restarts) all verify the same playback links and admin sessions. Two workers starting at
    once: one link wins, both read its key."""
    path = os.path.join(directory or instance_path(), "secret_key")
    if not os.path.exists(path):
        draft = f"{path}.{os.getpid()}"
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_hex(32))
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(draft)
    with open(path) as handle:
        return handle.read().strip()


class Config:
    """Every setting, read from the environment and checked, in groups; README has the table."""

    def __init__(self) -> None:
        self._read_services()
        self._read_twilio()
        self._read_web()
        self._read_limits_and_jobs()
        self._read_logging()
        self._read_storage()
        self._read_transcription()

    def _read_services(self) -> None:
        env = os.environ.get
        self.SQLALCHEMY_DATABASE_URI = checked_database_url(env("DATABASE_URL", ""))  # "" = instance/ default
        self.REDIS_URL = checked_redis_url(env("REDIS_URL"))
        # Heroku Key-Value Store serves rediss:// with a self-signed certificate (Heroku's docs tell clients not
        # to verify it): false accepts it. TLS still encrypts; only the certificate check is off.
        self.REDIS_TLS_VERIFY = env_bool("REDIS_TLS_VERIFY", True)
        self.RQ_QUEUE = env("RQ_QUEUE", "audio")

    def _read_twilio(self) -> None:
        env = os.environ.get
        self.TWILIO_ACCOUNT_SID = env("TWILIO_ACCOUNT_SID") or None
        self.TWILIO_AUTH_TOKEN = env("TWILIO_AUTH_TOKEN") or None
        self.TWILIO_API_KEY_SID = env("TWILIO_API_KEY_SID") or None
        self.TWILIO_API_KEY_SECRET = env("TWILIO_API_KEY_SECRET") or None
        self.TWILIO_API_BASE_URL = (env("TWILIO_API_BASE_URL") or "").rstrip("/") or None
        if self.TWILIO_ACCOUNT_SID and not self.TWILIO_AUTH_TOKEN:
            # The auth token checks Twilio's webhook signatures and validates Flex tokens: an API key cannot.
            raise ConfigError("TWILIO_AUTH_TOKEN must be set together with TWILIO_ACCOUNT_SID")
        # Sandbox mode: no real credentials, every Twilio call goes to the built-in fake.
        self.TWILIO_SANDBOX = self.TWILIO_ACCOUNT_SID is None
        self.SANDBOX_DB = env("SANDBOX_DB") or None  # default: instance/twilio-sandbox.db

    def _read_web(self) -> None:
        env = os.environ.get
        secret = env("SECRET_KEY")
        if not secret and not self.TWILIO_SANDBOX:
            # Playback URLs are signed: with a random key per process, one dyno's links break on another.
            raise ConfigError("SECRET_KEY must be set when Twilio credentials are configured")
        self.SECRET_KEY = secret or instance_secret_key()

        self.PUBLIC_BASE_URL = (env("PUBLIC_BASE_URL") or "").rstrip("/") or None
        if not self.PUBLIC_BASE_URL and not self.TWILIO_SANDBOX:
            # Without it the signed URL is rebuilt from Host / X-Forwarded-Host, which the sender chooses: a
            # signature made for any other host of the same account would pass.
            raise ConfigError(
                "PUBLIC_BASE_URL must be set when Twilio credentials are configured (the https URL "
                "Twilio's webhooks are configured with, e.g. https://audio.example.com)"
            )
        if self.PUBLIC_BASE_URL and not self.PUBLIC_BASE_URL.startswith(("https://", "http://")):
            raise ConfigError(f"PUBLIC_BASE_URL={self.PUBLIC_BASE_URL!r} is not an http(s) URL")
        # The admin page's session cookie: never over plain http once the service is public over https (Heroku
        # also answers http://), and not sent along with other sites' cross-site posts.
        self.SESSION_COOKIE_SECURE = (self.PUBLIC_BASE_URL or "").startswith("https://")
        self.SESSION_COOKIE_SAMESITE = "Lax"
        # No proxy is trusted unless one is said to be in front: else any client names its own address in
        # X-Forwarded-For, and with it escapes the limits on refused tokens. Heroku's router is one (set 1 there).
        # No proxy is believed unless there is one: without it, any client names its own address in X-Forwarded-For.
        # Heroku (which sets DYNO) always has exactly one, its router; there, believing none would make every client
        # the router, and one client's refused tokens would lock every agent out.
        self.PROXY_FIX_HOPS = env_int("PROXY_FIX_HOPS", 1 if env("DYNO") else 0)
        self.FLEX_ALLOWED_ORIGINS = [
            o.strip() for o in env("FLEX_ALLOWED_ORIGINS", "https://flex.twilio.com").split(",") if o.strip()
        ]
        self.ADMIN_TOKEN = env("ADMIN_TOKEN") or None

    def _read_limits_and_jobs(self) -> None:
        self.PLAYBACK_URL_TTL_S = env_int("PLAYBACK_URL_TTL_S", 3600, minimum=1)
        self.MEDIA_DOWNLOAD_MAX_BYTES = env_int("MEDIA_DOWNLOAD_MAX_BYTES", 32 * 1024 * 1024, minimum=1)
        self.TWILIO_HTTP_TIMEOUT_S = env_int("TWILIO_HTTP_TIMEOUT_S", 15, minimum=1)
        self.TWILIO_HTTP_RETRIES = env_int("TWILIO_HTTP_RETRIES", 4)
        self.UPLOAD_MAX_BYTES = env_int("UPLOAD_MAX_BYTES", 100 * 1024 * 1024, minimum=1)
        self.FFMPEG_TIMEOUT_S = env_int("FFMPEG_TIMEOUT_S", 120, minimum=1)
        # One ffmpeg's memory (audio/bounded.py: RLIMIT_DATA); a legitimate voice note peaks at 40-150 MB resident,
        # up to ~230 MB allocated (what the limit counts), loudnorm on 7.1 audio at 192 kHz being the most.
        self.FFMPEG_MAX_MEMORY_MB = env_int("FFMPEG_MAX_MEMORY_MB", 512, minimum=64)
        # Agent uploads converted at once by one web process (outbound/convert.py); more wait briefly, then 503.
        self.CONVERSIONS_PER_PROCESS = env_int("CONVERSIONS_PER_PROCESS", 2, minimum=1)
        self.INBOUND_MAX_DURATION_S = env_int("INBOUND_MAX_DURATION_S", 3600, minimum=1)
        self.SETTINGS_CHECK_INTERVAL_S = env_float("SETTINGS_CHECK_INTERVAL_S", 2.0)
        self.JOB_MAX_ATTEMPTS = env_int("JOB_MAX_ATTEMPTS", 5, minimum=1)
        self.JOB_RETRY_BASE_S = env_int("JOB_RETRY_BASE_S", 10)  # job-level backoff: 10, 20, 40 ... 300 s
        self.SWEEP_STUCK_AFTER_S = env_int("SWEEP_STUCK_AFTER_S", 900)  # longer than the 600 s job timeout
        self.SWEEP_REQUEUE_AFTER_S = env_int("SWEEP_REQUEUE_AFTER_S", 300)
        self.MAINTENANCE_INTERVAL_S = env_int("MAINTENANCE_INTERVAL_S", 60)
        # The relay wakes on PostgreSQL NOTIFY; this is only its safety-net poll (jobs/relay.py).
        self.RELAY_POLL_S = env_int("RELAY_POLL_S", 5, minimum=1)
        self.JOB_WORKERS = env_int("JOB_WORKERS", 2, minimum=1)  # threads of the in-process job runner

    def _read_logging(self) -> None:
        self.LOG_LEVEL = env_choice("LOG_LEVEL", "INFO", LOG_LEVELS, upper=True)
        self.LOG_FORMAT = env_choice("LOG_FORMAT", "json", LOG_FORMATS)  # json (one object per line) or text
        self.METRICS_TOKEN = os.environ.get("METRICS_TOKEN") or None

    def _read_storage(self) -> None:
        env = os.environ.get
        # Media storage and retention (docs/architecture.md, "Storage and retention"); checked by storage.init_app.
        self.MEDIA_STORE = (env("MEDIA_STORE") or "database").strip().lower()  # database | s3
        self.S3_BUCKET = env("S3_BUCKET") or None
        self.S3_ENDPOINT_URL = env("S3_ENDPOINT_URL") or None  # MinIO, R2, moto; unset: AWS
        self.S3_PUBLIC_ENDPOINT_URL = env("S3_PUBLIC_ENDPOINT_URL") or None  # presigned URLs' host, if different
        self.S3_REGION = env("S3_REGION") or None
        self.S3_PREFIX = env("S3_PREFIX", "")  # media keys already start with audio/<id>/
        self.S3_PRESIGN = env_bool("S3_PRESIGN", True)  # false: stream objects through this service
        # Never beyond the playback link's own life.
        self.S3_PRESIGN_TTL_S = env_int("S3_PRESIGN_TTL_S", 900, minimum=1)
        self.RETENTION_DAYS = env_int("RETENTION_DAYS", 0)  # 0: keep media forever

    def _read_transcription(self) -> None:
        env = os.environ.get
        # webhook_app/transcripts/: the model (a faster-whisper name or a local directory; unset: the tiny.en model
        # the `transcribe` extra bundles), its CPU threads, compute type and beam size.
        self.TRANSCRIBE_MODEL = (env("TRANSCRIBE_MODEL") or "").strip() or None
        self.TRANSCRIBE_THREADS = env_int("TRANSCRIBE_THREADS", 2, minimum=1)
        self.TRANSCRIBE_COMPUTE_TYPE = env_choice("TRANSCRIBE_COMPUTE_TYPE", "int8", COMPUTE_TYPES)
        self.TRANSCRIBE_BEAM_SIZE = env_int("TRANSCRIBE_BEAM_SIZE", 5, minimum=1)
        # Unset: a transcript's text is deleted with its audio (RETENTION_DAYS). A number of days (at least the
        # audio's) keeps the text that long instead.
        self.TRANSCRIPT_RETENTION_DAYS = env_int("TRANSCRIPT_RETENTION_DAYS", 0) or None
        if (
            self.TRANSCRIPT_RETENTION_DAYS
            and self.RETENTION_DAYS
            and self.TRANSCRIPT_RETENTION_DAYS < self.RETENTION_DAYS
        ):
            raise ConfigError(
                f"TRANSCRIPT_RETENTION_DAYS={self.TRANSCRIPT_RETENTION_DAYS} is shorter than "
                f"RETENTION_DAYS={self.RETENTION_DAYS}: a transcript is kept at least as long as its "
                "audio (unset it to delete both together)"
            )
