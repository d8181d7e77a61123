"""The app's models: each loaded once per name, at one or two analysis sizes, with downloads kept
off the queue that every visitor's views share.

A released model's first use is a download of up to ~400 MB. Loading runs once per name (a lock
per name, so other models are not held up); a failed load is remembered and retried after a
doubling backoff, so a failing host is not asked again by every request; and `ready`, which the
views call before they run a network, starts a download in the background and tells the visitor
to retry instead of holding up everyone else's requests until it ends.
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import replace

from ccnet import limits
from ccnet.app.analysis import INTERACTIVE_PIXELS
from ccnet.errors import CCNetError, shown
from ccnet.inference.predictor import Predictor, interactive
from ccnet.nn.model import CCNet
from ccnet.weights import download, family, presets
from ccnet.weights.download import ProgressFn
from ccnet.weights.load import LoadedModel, load_model

LOAD_BACKOFF_S, LOAD_BACKOFF_MAX_S = 30.0, 600.0  # a failed model load is not retried for 30 s, doubling to 10 min
READY_WAIT_S = 3.0  # how long a view waits for a download it started (a cached file or a refused host: less)
log = logging.getLogger("ccnet.app")


class ModelStore:
    """Models by name: loaded once, optionally restricted to a menu, downloads in the background."""

    def __init__(self, default: str, device: str, amp: str | None,
                 loader: Callable[..., LoadedModel] = load_model) -> None:
        self.default, self.device, self.amp = default, device, amp
        self.allowed: tuple[str, ...] | None = None  # None: any name load_model accepts
        self._loader = loader
        self._models: dict[str, tuple[LoadedModel, Predictor]] = {}
        self._interactive: dict[str, Predictor] = {}
        self._lock = threading.Lock()
        self._load_locks: dict[str, threading.Lock] = {}
        self._loading: dict[str, threading.Thread] = {}  # background downloads in progress
        self._failures: dict[str, tuple[float, CCNetError, int]] = {}  # name -> (retry after, error, failures)
        self._released: OrderedDict[str, int] = OrderedDict()  # resident released models, least recent first: bytes

    def restrict(self, names: Iterable[str]) -> None:
        """Only these names (and the start-up model) may be loaded: the app passes its menu, so a
        request cannot make the server open an arbitrary checkpoint path. The embedded model's
        siblings (heads on its backbone, shipped in assets/) come with it."""
        names = [self.default, *(n for n in names if n != self.default)]
        if family.BASE in names:
            names += [family.sibling_name(arm) for arm in family.SIBLINGS]
        self.allowed = tuple(dict.fromkeys(names))

    def _check_allowed(self, name: str) -> None:
        if self.allowed is not None and name not in self.allowed:
            raise CCNetError(f"unknown model {shown(name)}; choose one of: {', '.join(self.allowed)}")

    def model(self, name: str | None = None, progress: ProgressFn | None = None) -> tuple[LoadedModel, Predictor]:
        """The loaded model and its predictor; a preset is fetched (with progress) on first use,
        blocking the caller: for the model queue and the background loads, not for the views."""
        name = name or self.default
        found = self._models.get(name)
        if found is not None:
            self._touch(name)
            return found
        self._check_allowed(name)
        with self._lock:  # one lock per name: a long download does not block the other models
            name_lock = self._load_locks.setdefault(name, threading.Lock())
        with name_lock:
            if name not in self._models:
                failed = self._failures.get(name)
                if failed and time.monotonic() < failed[0]:  # remembered: no request retries a failing host
                    raise failed[1]
                try:
                    if self.is_released(name):  # its download stays within the server's disk budget
                        download.prune_cache(limits.MODEL_CACHE_MB * limits.MiB, presets.get(name).download_mb * 1e6,
                                             keep=frozenset({presets.get(name).path.name}))
                    loaded = self._loader(name, progress=progress)
                except CCNetError as err:
                    backoff = min(LOAD_BACKOFF_MAX_S, LOAD_BACKOFF_S * 2 ** (failed[2] if failed else 0))
                    self._failures[name] = (time.monotonic() + backoff, err, (failed[2] + 1) if failed else 1)
                    raise
                self._failures.pop(name, None)
                predictor = Predictor(loaded.net, loaded.protocol, self.device, self.amp)
                if self.device == "cpu":  # the predictor's BatchNorm-folded copy serves; drop the original
                    loaded = replace(loaded, net=predictor.net)  # (on a GPU it stays: the CPU fallback copies it)
                self._models[name] = (loaded, predictor)
                if self.is_released(name):
                    self._keep_released(name, _resident_bytes(loaded.net))
        return self._models[name]

    def is_released(self, name: str) -> bool:
        """A released preset other than the start-up model: such models come and go with use."""
        return name != self.default and name in presets.presets()

    def _touch(self, name: str) -> None:
        with self._lock:
            if name in self._released:
                self._released.move_to_end(name)

    def _keep_released(self, name: str, nbytes: int) -> None:
        """Count a released model in, then unload the least recently used others while they pass
        MODEL_MEMORY_MB (the one just loaded stays); its checkpoint's time marks its use on disk."""
        with contextlib.suppress(OSError):
            os.utime(presets.get(name).path)
        with self._lock:
            self._released[name] = nbytes
            while sum(self._released.values()) > limits.MODEL_MEMORY_MB * limits.MiB and len(self._released) > 1:
                old = next(iter(self._released))
                del self._released[old]
                for key in (old, f"{old}\0cpu"):
                    self._models.pop(key, None)
                self._interactive.pop(old, None)
                log.info("released model %s unloaded (least recently used)", old)

    def loaded(self, name: str) -> bool:
        """Whether a model is ready (loading one may mean a download)."""
        return name in self._models

    def ready(self, name: str | None = None, wait_s: float = READY_WAIT_S) -> None:
        """Return once the model is loaded. A released model that is not yet is loaded in a
        background thread (one per name); the caller waits at most `wait_s` for a load it started
        (a cached file or a refused host takes less) and not at all for one already under way,
        then gets that load's error or a one-line "retry" while the download goes on."""
        name = name or self.default
        if name in self._models:
            return
        self._check_allowed(name)
        if name not in presets.presets():
            self.model(name)  # the embedded model, its siblings and files: read from disk, no download
            return
        failed = self._failures.get(name)
        if failed and time.monotonic() < failed[0]:
            raise failed[1]
        with self._lock:
            loading = self._loading.get(name)
            if loading is None:
                loading = self._loading[name] = threading.Thread(target=self._load_in_background, args=(name,),
                                                                 name=f"load {name}", daemon=True)
                loading.start()
            else:
                wait_s = 0.0
        loading.join(wait_s)
        if name in self._models:
            return
        if not loading.is_alive() and name in self._failures:
            raise self._failures[name][1]
        raise CCNetError(f"{name} is being downloaded (about {presets.get(name).download_mb:.0f} MB); "
                         "retry in a minute")

    def _load_in_background(self, name: str) -> None:
        try:
            self.model(name)
        except CCNetError:
            pass  # remembered in _failures, with its backoff; the next request is told
        except Exception:
            log.exception("loading %s failed", name)
        finally:
            with self._lock:
                self._loading.pop(name, None)

    def predictor(self, name: str, size: str) -> Predictor:
        """The model's predictor at this analysis size (one network shared by both sizes)."""
        loaded, full = self.model(name)
        if size == "full":
            return full
        with self._lock:
            if name not in self._interactive:
                self._interactive[name] = Predictor(full.net, interactive(loaded.protocol, INTERACTIVE_PIXELS),
                                                    self.device, self.amp, optimize=False)  # one network
        return self._interactive[name]

    def cpu_predictor(self, name: str) -> Predictor:
        """A CPU copy of a model, for images the GPU has no memory for (made on first need)."""
        key = f"{name}\0cpu"
        with self._lock:
            if key not in self._models:
                loaded = self._models[name][0]
                if next(loaded.net.parameters()).device.type == "cpu":  # the CPU store's folded network
                    self._models[key] = (loaded, Predictor(loaded.net, loaded.protocol, "cpu", optimize=False))
                else:
                    clone = CCNet(loaded.net.config)  # built on the CPU: the GPU has no room for a copy
                    clone.load_state_dict({k: v.detach().cpu() for k, v in loaded.net.state_dict().items()})
                    self._models[key] = (loaded, Predictor(clone, loaded.protocol, "cpu"))
        return self._models[key][1]


def _resident_bytes(net: object) -> int:
    """What a network's parameters and buffers hold in memory."""
    tensors = [*net.parameters(), *net.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)
