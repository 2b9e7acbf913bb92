"""The one in-memory cache of the service: bounded, thread-safe, entries that expire.

Per process, for lookups that change rarely and cost a round trip (a conversation's participants, its
Conversations service, a Flex token's verdict). When full, the least recently used entry goes, never the lot.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Callable, Hashable


class ExpiringCache:
    def __init__(self, ttl_s: float = 60.0, max_entries: int = 2048, clock: Callable[[], float] = time.monotonic):
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        # time.time when entries expire at instants given from outside (a token's expiration), else monotonic.
        self.clock = clock
        self._entries: OrderedDict[Hashable, tuple[float, object]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable):
        """The cached value, or None when there is none or it has expired (nothing is fetched)."""
        with self._lock:
            hit = self._entries.get(key)
            if hit is None:
                return None
            if hit[0] <= self.clock():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return hit[1]

    def put(self, key: Hashable, value, expires_at: float | None = None) -> None:
        """Cache `value` for ttl_s, or until `expires_at` on the cache's clock."""
        expires_at = self.clock() + self.ttl_s if expires_at is None else expires_at
        with self._lock:
            self._entries[key] = (expires_at, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def get_or_fetch(self, key: Hashable, fetch: Callable):
        """The cached value, else `fetch(key)`'s answer, cached."""
        hit = self.get(key)
        return hit if hit is not None else self.refresh(key, fetch)

    def refresh(self, key: Hashable, fetch: Callable):
        """Fetch now, whatever is cached, and cache the answer."""
        expires_at = self.clock() + self.ttl_s  # from before the call: a slow answer is not kept longer
        value = fetch(key)
        self.put(key, value, expires_at)
        return value
