from pathlib import Path

import pytest

from tests.helpers.processes import GUNICORN_CONF
from webhook_app.audio import ffmpeg
from webhook_app.config import Config, ConfigError, env_bool, normalize_database_url


def test_heroku_postgres_url_is_rewritten_for_psycopg3():
    assert normalize_database_url("postgres://u:p@h:5432/d") == "postgresql+psycopg://u:p@h:5432/d"
    assert normalize_database_url("postgresql://u@h/d") == "postgresql+psycopg://u@h/d"
    assert normalize_database_url("sqlite:///x.db") == "sqlite:///x.db"


def test_booleans_are_parsed_explicitly(monkeypatch):
    monkeypatch.setenv("FLAG", "yes")
    assert env_bool("FLAG", False) is True
    monkeypatch.setenv("FLAG", "off")
    assert env_bool("FLAG", True) is False
    monkeypatch.setenv("FLAG", "ture")
    with pytest.raises(ValueError, match="not a boolean"):
        env_bool("FLAG", False)


def test_secret_key_is_required_with_real_twilio_credentials(monkeypatch):
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC" + "0" * 32)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "token")
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://audio.example.com")
    monkeypatch.delenv("SECRET_KEY", raising=False)
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        Config()
    monkeypatch.setenv("SECRET_KEY", "s3cret")
    assert Config().TWILIO_SANDBOX is False


def test_sandbox_mode_without_credentials(monkeypatch):
    monkeypatch.delenv("TWILIO_ACCOUNT_SID", raising=False)
    config = Config()
    assert config.TWILIO_SANDBOX is True
    assert config.FLEX_ALLOWED_ORIGINS == ["https://flex.twilio.com"]


def test_transcription_settings_are_read_and_checked(monkeypatch):
    monkeypatch.delenv("TWILIO_ACCOUNT_SID", raising=False)
    for name in (
        "TRANSCRIBE_MODEL",
        "TRANSCRIBE_THREADS",
        "TRANSCRIBE_COMPUTE_TYPE",
        "TRANSCRIBE_BEAM_SIZE",
        "TRANSCRIPT_RETENTION_DAYS",
        "RETENTION_DAYS",
    ):
        monkeypatch.delenv(name, raising=False)
    config = Config()
    assert (
        config.TRANSCRIBE_MODEL,
        config.TRANSCRIBE_THREADS,
        config.TRANSCRIBE_COMPUTE_TYPE,
        config.TRANSCRIBE_BEAM_SIZE,
        config.TRANSCRIPT_RETENTION_DAYS,
    ) == (None, 2, "int8", 5, None)
    monkeypatch.setenv("TRANSCRIBE_MODEL", " /srv/models/base ")
    monkeypatch.setenv("TRANSCRIBE_COMPUTE_TYPE", "FLOAT32")
    monkeypatch.setenv("RETENTION_DAYS", "30")
    monkeypatch.setenv("TRANSCRIPT_RETENTION_DAYS", "365")
    config = Config()
    assert (config.TRANSCRIBE_MODEL, config.TRANSCRIBE_COMPUTE_TYPE, config.TRANSCRIPT_RETENTION_DAYS) == (
        "/srv/models/base",
        "float32",
        365,
    )
    for name, value in (
        ("TRANSCRIBE_THREADS", "0"),
        ("TRANSCRIBE_COMPUTE_TYPE", "int4"),
        ("TRANSCRIBE_BEAM_SIZE", "five"),
        ("TRANSCRIPT_RETENTION_DAYS", "7"),
    ):
        with monkeypatch.context() as patch:
            patch.setenv(name, value)
            with pytest.raises(ValueError, match=name):
                Config()


@pytest.fixture(autouse=True)
def ffmpeg_choice_left_as_found():
    """ffmpeg_binary() chooses once per process and every later test runs the service with that choice: a test
    here that looks at the choice must not change it for them (this runs after monkeypatch has restored the env)."""
    before = ffmpeg.ffmpeg_binary()
    yield
    assert ffmpeg.ffmpeg_binary() == before, "this test changed which ffmpeg the rest of the session uses"


def choose_ffmpeg() -> str:
    """ffmpeg_binary's choice made afresh from the environment, leaving the cached one alone."""
    return ffmpeg.ffmpeg_binary.__wrapped__()


def executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_ffmpeg_binary_prefers_ffmpeg_binary_variable(monkeypatch, tmp_path):
    fake = executable(tmp_path / "my-ffmpeg")
    monkeypatch.setenv("PATH", str(executable(tmp_path / "bin" / "ffmpeg").parent))
    monkeypatch.setenv("FFMPEG_BINARY", str(fake))
    assert choose_ffmpeg() == str(fake)
    monkeypatch.setenv("FFMPEG_BINARY", str(tmp_path / "missing-ffmpeg"))
    with pytest.raises(RuntimeError, match="is not an executable"):
        choose_ffmpeg()


def test_ffmpeg_binary_takes_the_one_on_path_then_the_wheels(monkeypatch, tmp_path):
    import imageio_ffmpeg

    monkeypatch.delenv("FFMPEG_BINARY", raising=False)
    on_path = executable(tmp_path / "bin" / "ffmpeg")
    monkeypatch.setenv("PATH", str(on_path.parent))
    assert choose_ffmpeg() == str(on_path)
    on_path.unlink()
    assert choose_ffmpeg() == imageio_ffmpeg.get_ffmpeg_exe()


def test_ffmpeg_version_is_what_the_binary_says_or_why_it_is_no_ffmpeg(tmp_path):
    fake = tmp_path / "ffmpeg"
    fake.write_text("#!/bin/sh\necho 'ffmpeg version 9.9-test Copyright (c) the FFmpeg developers'\n")
    fake.chmod(0o755)
    assert ffmpeg.ffmpeg_version(str(fake)) == "9.9-test"
    silent = executable(tmp_path / "silent" / "ffmpeg")
    with pytest.raises(ConfigError, match=r"is not a working ffmpeg: `.*silent/ffmpeg -version` says 'exit status 0'"):
        ffmpeg.ffmpeg_version(str(silent))


def test_gunicorn_runs_gevent_on_postgresql_and_threads_on_sqlite(monkeypatch):
    import runpy

    monkeypatch.setenv("DATABASE_URL", "postgres://u:p@db.example.com:5432/d")  # Heroku's spelling
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    monkeypatch.delenv("WEB_THREADS", raising=False)  # the default is the point
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")  # the file sets it: undone after the test
    on_postgres = runpy.run_path(GUNICORN_CONF)
    assert on_postgres["worker_class"] == "gevent" and on_postgres["workers"] == 3
    assert callable(on_postgres["post_request"])  # the fairness yield after each request
    monkeypatch.delenv("DATABASE_URL")
    on_sqlite = runpy.run_path(GUNICORN_CONF)
    # gthread's threads, handed only whole requests (webhook_app/web/gunicorn_worker.py)
    assert on_sqlite["worker_class"] == "webhook_app.web.gunicorn_worker.BufferedRequestWorker"
    assert on_sqlite["threads"] == 64 and "post_request" not in on_sqlite


def test_gunicorn_workers_freeze_the_loaded_app_out_of_garbage_collection():
    """A full collection over the whole app stalled every connection of a web process for 60-150 ms."""
    import subprocess
    import sys

    script = (
        "import gc, runpy; from webhook_app import create_app; create_app(); before = gc.get_freeze_count(); "
        f"runpy.run_path({GUNICORN_CONF!r})['post_worker_init'](None); print(before, gc.get_freeze_count())"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    before, after = map(int, out)
    assert before == 0 and after > 10_000  # the app's objects, not a handful


def test_the_sandbox_secret_key_is_one_for_every_process(tmp_path):
    """Without SECRET_KEY (sandbox mode), gunicorn's workers must still sign and verify the same links."""
    import multiprocessing

    from webhook_app.config import instance_secret_key

    with multiprocessing.get_context("spawn").Pool(4) as pool:
        keys = pool.map(instance_secret_key, [str(tmp_path)] * 8)
    assert len(set(keys)) == 1 and len(keys[0]) == 64
    assert instance_secret_key(str(tmp_path)) == keys[0]
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret_key"]


@pytest.mark.parametrize(
    "name, value",
    [
        ("TWILIO_HTTP_RETRIES", "-1"),
        ("PROXY_FIX_HOPS", "-1"),
        ("INBOUND_MAX_DURATION_S", "0"),
        ("SETTINGS_CHECK_INTERVAL_S", "inf"),
        ("LOG_FORMAT", "jsno"),
        ("LOG_LEVEL", "LOUD"),
        ("JOB_WORKERS", "0"),
    ],
)
def test_nonsense_settings_stop_the_start_up(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=name):
        Config()


def test_a_number_that_is_not_one_is_refused_with_its_unit_and_an_example(monkeypatch):
    monkeypatch.setenv("UPLOAD_MAX_BYTES", "100MB")
    with pytest.raises(ConfigError) as refused:
        Config()
    assert str(refused.value) == "UPLOAD_MAX_BYTES='100MB' is not an integer (bytes, e.g. 104857600)"
    assert isinstance(refused.value, ValueError) and isinstance(refused.value, RuntimeError)  # what callers caught


def test_an_account_sid_without_its_auth_token_is_refused_in_one_line(monkeypatch):
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC" + "0" * 32)
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="^TWILIO_AUTH_TOKEN must be set together with TWILIO_ACCOUNT_SID$"):
        Config()


@pytest.mark.parametrize(
    "value", ["nonsense", "postgres//deploy:s3cret@db.example.com/audio", "mysql2://h/d", "postgresql://h:port/d"]
)
def test_a_malformed_database_url_names_the_variable_and_the_form_without_its_password(monkeypatch, value):
    monkeypatch.setenv("DATABASE_URL", value)
    with pytest.raises(
        ConfigError, match=r"^DATABASE_URL='.*' is not a database URL \(expected postgres://"
    ) as refused:
        Config()
    assert "s3cret" not in str(refused.value)


@pytest.mark.parametrize("value", ["postgres://u:p@db.example.com:5432/d", "sqlite:////srv/audio.db", ""])
def test_database_urls_of_both_kinds_are_taken(monkeypatch, value):
    monkeypatch.setenv("DATABASE_URL", value)
    assert Config().SQLALCHEMY_DATABASE_URI == normalize_database_url(value)


@pytest.mark.parametrize(
    "value",
    [
        "redis://127.0.0.1:6379/9x",  # redis-py would quietly use database 0
        "redis://127.0.0.1:6379?db=one",
        "http://127.0.0.1:6379/0",
        "redis://:s3cret@127.0.0.1:port/0",
        "unix://",
    ],
)
def test_a_malformed_redis_url_is_refused_not_read_as_database_0(monkeypatch, value):
    monkeypatch.setenv("REDIS_URL", value)
    with pytest.raises(ConfigError, match=r"^REDIS_URL='.*' is not a Redis URL \(expected redis://") as refused:
        Config()
    assert "s3cret" not in str(refused.value)


@pytest.mark.parametrize(
    "value",
    ["redis://127.0.0.1:6379/0", "redis://cache", "rediss://:p@kvs.example.com:6380", "unix:///run/r.sock?db=2"],
)
def test_redis_urls_redis_py_reads_as_written_are_taken(monkeypatch, value):
    monkeypatch.setenv("REDIS_URL", value)
    assert Config().REDIS_URL == value


def test_an_empty_boolean_is_its_default(monkeypatch):
    monkeypatch.setenv("S3_PRESIGN", "")
    assert Config().S3_PRESIGN is True


@pytest.mark.parametrize(
    "verify, expected", [(None, "CERT_REQUIRED"), ("true", "CERT_REQUIRED"), ("false", "CERT_NONE")]
)
def test_redis_tls_verification_is_on_unless_turned_off(monkeypatch, tmp_path, verify, expected):
    """Heroku Key-Value Store's rediss:// URL has a self-signed certificate: REDIS_TLS_VERIFY=false accepts it."""
    import ssl

    from webhook_app import create_app

    monkeypatch.setenv("REDIS_URL", "rediss://:secret@kvs.example.com:6380")
    if verify is None:
        monkeypatch.delenv("REDIS_TLS_VERIFY", raising=False)
    else:
        monkeypatch.setenv("REDIS_TLS_VERIFY", verify)
    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'x.db'}",
            "SANDBOX_DB": str(tmp_path / "sandbox.db"),
            "SECRET_KEY": "test-secret",
        }
    )
    connection = app.extensions["jobs"].redis.connection_pool.make_connection()  # builds, does not connect
    assert connection.cert_reqs == getattr(ssl, expected)
