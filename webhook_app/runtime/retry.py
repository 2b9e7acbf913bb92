"""The one retry policy for the service's outgoing calls: exponential backoff, with jitter so that processes
failing together do not retry together, and the server's Retry-After honoured when it sends one.

Used by every Twilio request (twilio/http.py), by a worker's loops while Redis or the database is down
(outages.LOOP_BACKOFF), by posting an agent's message within MCS's window
(outbound/post.py) and by jobs that schedule their own next attempt (jobs/queue.py's retry_delay). S3 retries
inside botocore (media/storage.py configures it).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# Twilio documents 429/503/504 as retryable; 500/502 are transient in practice too.
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    base_s: float = 0.5
    max_delay_s: float | None = None
    # A server may ask for long waits; within a request we wait at most this long (None: as asked).
    max_retry_after_s: float | None = 30.0
    jitter: bool = True

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number `retry` (1 for the first)."""
        if retry_after is not None:
            return retry_after if self.max_retry_after_s is None else min(retry_after, self.max_retry_after_s)
        delay: float = self.base_s * 2 ** (max(1, retry) - 1)
        if self.max_delay_s is not None:
            delay = min(delay, self.max_delay_s)
        return delay * (0.5 + random.random()) if self.jitter else delay
