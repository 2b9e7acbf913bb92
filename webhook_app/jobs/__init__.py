"""Jobs: the work that runs after a request has answered.

In: job functions marked @queue.job and enqueued by dotted path with ids (queue.py); what the flows register
(registry.py): their outboxes, whose new `queued` rows the relay hands to RQ with PostgreSQL (relay.py), and their
recovery steps for rows orphaned by crashes or outages, which the sweeper runs (sweeper.py). Out: the jobs run in
RQ workers or the web process's thread pool, each in an app context of its own. A leaf: nothing here imports a
flow (inbound/, outbound/, media/, settings/, transcripts/).
"""

from __future__ import annotations

from typing import Any

from .queue import run_job as _run

# Job names of the deploys before jobs were enqueued by dotted path. Their jobs, enqueued as
# `webhook_app.jobs.run_job('normalize_inbound', 1)`, may still sit in Redis (or RQ's schedule) when this code
# starts; RQ finds them by that path, so it must keep answering. Nothing enqueues it any more.
LEGACY_JOBS = {
    "normalize_inbound": "webhook_app.inbound.normalize.process_inbound",
    "expand_message": "webhook_app.inbound.expand.expand_message",
}


def run_job(name: str, *args: Any) -> Any:
    return _run(LEGACY_JOBS[name], *args)
