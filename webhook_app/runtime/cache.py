"""The one in-memory cache of the service: bounded, thread-safe, entries that expire.

Per process, for lookups that change rarely and cost a round trip (a conversation's participants, its
Conversations service, a Flex token's verdict) and for the in-process runner's once-keys. When full, the least
recently used entry goes, never the lot.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic

from typing_extensions import TypeVar  # a TypeVar with a default (typing's from Python 3.13)

# What a cache maps: declared where it is built (`ExpiringCache[str, FlexUser | Refusal]`), else any values.
K = TypeVar("K", bound=Hashable, default=Hashable)
V = TypeVar("V", default=Any)


class ExpiringCache(Generic[K, V]):
    def __init__(
        self, ttl_s: float = 60.0, max_entries: int = 2048, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        # time.time when entries expire at instants given from outside (a token's expiration), else monotonic.
        self.clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
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

    def put(self, key: K, value: V, expires_at: float | None = None) -> None:
        """Cache `value` for ttl_s, or until `expires_at` on the cache's clock."""
        expires_at = self.clock() + self.ttl_s if expires_at is None else expires_at
        with self._lock:
            self._entries[key] = (expires_at, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def add(self, key: K, value: V, ttl_s: float) -> bool:
        """Cache `value` for `ttl_s` unless the key holds one that has not expired; answer whether it was added.
        Atomic: of two callers adding one key, exactly one succeeds."""
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None and hit[0] > self.clock():
                return False
            self._entries.pop(key, None)
            self._entries[key] = (self.clock() + ttl_s, value)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
            return True

    def discard(self, key: K) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def get_or_fetch(self, key: K, fetch: Callable[[K], V]) -> V:
        """The cached value, else `fetch(key)`'s answer, cached."""
        hit = self.get(key)
        return hit if hit is not None else self.refresh(key, fetch)

    def refresh(self, key: K, fetch: Callable[[K], V]) -> V:
        """Fetch now, whatever is cached, and cache the answer."""
        expires_at = self.clock() + self.ttl_s  # from before the call: a slow answer is not kept longer
        value = fetch(key)
        self.put(key, value, expires_at)
        return value
