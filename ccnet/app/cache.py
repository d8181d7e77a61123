"""A thread-safe LRU bounded in entries and bytes: the app's one store of network results."""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any


class LRUCache:
    """Thread-safe least-recently-used cache bounded both in entries and in bytes.

    ``get_or_create`` computes a missing value once even when two requests ask at the same time
    (an upload and a click racing), so the network never runs twice for one key.
    """

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._pending: dict[Hashable, threading.Lock] = {}
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key][0]

    def put(self, key: Hashable, value: Any, nbytes: int) -> None:
        """Store, then evict the oldest entries until both bounds hold; a value larger than
        ``max_bytes`` on its own is not stored at all."""
        with self._lock:
            if key in self._items:
                self.nbytes -= self._items.pop(key)[1]
            if nbytes > self.max_bytes:
                return
            self._items[key] = (value, nbytes)
            self.nbytes += nbytes
            while len(self._items) > self.max_entries or self.nbytes > self.max_bytes:
                self.nbytes -= self._items.popitem(last=False)[1][1]

    def get_or_create(self, key: Hashable, create: Callable[[], tuple[Any, int]]) -> Any:
        """The cached value, or ``create()`` -> (value, nbytes) run once per key at a time."""
        value = self.get(key)
        if value is not None:
            return value
        with self._lock:
            key_lock = self._pending.setdefault(key, threading.Lock())
        try:
            with key_lock:
                value = self.get(key)
                if value is None:
                    value, nbytes = create()
                    self.put(key, value, nbytes)
        finally:
            with self._lock:
                self._pending.pop(key, None)
        return value
