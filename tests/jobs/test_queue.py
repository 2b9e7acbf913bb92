"""Jobs by dotted path, and the jobs an older deploy left in the queue."""

from __future__ import annotations

import pytest

from tests.helpers.audio_samples import make_audio
from tests.helpers.service import audio_rows
from webhook_app import jobs
from webhook_app.jobs.queue import RqRunner, job_path, resolve

# The path RQ stores with each job: deployed Redis queues hold it, so it must not change.
NORMALIZE_INBOUND = "webhook_app.inbound.normalize.process_inbound"


def test_a_job_is_named_by_its_dotted_path_and_found_by_it():
    from webhook_app.inbound.normalize import process_inbound

    assert job_path(process_inbound) == NORMALIZE_INBOUND == "webhook_app.inbound.normalize.process_inbound"
    assert resolve(NORMALIZE_INBOUND) is process_inbound.__wrapped__
    with pytest.raises(TypeError):
        job_path(print)  # not marked as a job


def test_a_job_an_older_deploy_enqueued_by_name_still_runs(app, deliver, tmp_path, monkeypatch):
    """Before jobs had dotted paths, RQ held `webhook_app.jobs.run_job('normalize_inbound', id)`: after an upgrade
    such a job, still in Redis, must run."""
    runner = app.extensions["jobs"]
    source = make_audio(tmp_path / "voice.ogg", "whatsapp_ogg", seconds=1.0)
    with monkeypatch.context() as patch:
        patch.setattr(type(runner), "enqueue", lambda self, path, *args: None)  # the row waits, job-less
        assert deliver(source, "audio/ogg")[1].status_code == 200
    (row,) = audio_rows(app)
    if isinstance(runner, RqRunner):
        if runner.relays_new_rows:
            pytest.skip("the relay hands the row out itself on PostgreSQL")
        job = runner.queue.enqueue("webhook_app.jobs.run_job", "normalize_inbound", row.id)
        with app.app_context():
            runner.wait()
        assert job.get_status(refresh=True) == "finished"
    else:
        with app.app_context():
            assert jobs.run_job("normalize_inbound", row.id) == "ready"
    assert [row.status for row in audio_rows(app)] == ["ready"]
