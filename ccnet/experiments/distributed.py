"""Running the experiments under `torchrun`: one process per device, in a process group built
from the variables torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT).

Without those variables nothing here touches torch.distributed: ``session`` yields a `Group` of
one process whose shard is everything and whose reductions return their input, so a plain run is
what it always was.

Under torchrun every rank works on its own device: ``cuda:LOCAL_RANK`` with NCCL when CUDA is
present and the command's device allows it, else the CPU with gloo. Work that can fail on one
rank (a corrupt image on its shard) runs through ``Group.checked``: every rank tells the others
whether it succeeded, with its one-line error, before anyone starts a reduction, so a failure ends
every rank at once with the same message instead of leaving the others blocked in a collective;
only rank 0 prints it. The process group's timeout (``CCNET_DIST_TIMEOUT`` seconds, default 120)
bounds any wait that still goes wrong, and torchrun stops the other ranks when one exits.
"""
from __future__ import annotations

import contextlib
import functools
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from ccnet.errors import CCNetError

TIMEOUT_ENV = "CCNET_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 120.0
# What torchrun hands its workers; a plain subprocess of a rank (the ablation's training runs) gets none of it.
LAUNCHER_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE",
                      "ROLE_RANK", "ROLE_WORLD_SIZE", "ROLE_NAME", "MASTER_ADDR", "MASTER_PORT")
T = TypeVar("T")


class RankError(CCNetError):
    """Raised alike on every rank when one of them failed; only rank 0 reports it."""


def launched() -> bool:
    """True in a process that torchrun started."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def is_main() -> bool:
    """Rank 0, or a plain run: the process that prints results and writes files."""
    return int(os.environ.get("RANK", "0")) == 0


def timeout_s() -> float:
    """The process group's timeout: $CCNET_DIST_TIMEOUT seconds, default 120."""
    text = os.environ.get(TIMEOUT_ENV, "")
    try:
        value = float(text) if text else DEFAULT_TIMEOUT_S
    except ValueError:
        value = -1.0
    if not 0 < value < 86_400:
        raise CCNetError(f"{TIMEOUT_ENV} must be a number of seconds above 0, got {text!r}")
    return value


def plain_environment() -> dict[str, str]:
    """This process's environment without torchrun's variables, for a child that must run on its own."""
    return {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARIABLES and not k.startswith("TORCHELASTIC_")}


def rank_device(device: str, local_rank: int) -> tuple[torch.device, str]:
    """(this rank's device, backend): ``cuda:LOCAL_RANK`` and NCCL when CUDA is there and ``device``
    is auto or cuda, else the CPU and gloo (a cuda asked for without CUDA fails later, in one line)."""
    if device != "cpu" and torch.cuda.is_available():
        if local_rank >= torch.cuda.device_count():
            raise CCNetError(f"LOCAL_RANK {local_rank} but this machine has {torch.cuda.device_count()} CUDA "
                             f"devices: start at most that many processes per node")
        return torch.device("cuda", local_rank), "nccl"
    return torch.device("cpu"), "gloo"


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    message = text[0] if text else ""
    return message if isinstance(err, CCNetError) else f"{type(err).__name__}: {message}".rstrip(": ")


@dataclass(frozen=True)
class Group:
    """This process's place in the run: rank, world size, device and backend (None: no process group)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None
    timeout: float = DEFAULT_TIMEOUT_S

    @property
    def distributed(self) -> bool:
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device_for(self, device: str) -> str:
        """The device a command asked for, made this rank's own: ``cuda:LOCAL_RANK`` when the group is on CUDA."""
        return str(self.device) if self.device.type == "cuda" else device

    def shard(self, items: Sequence[T]) -> list[T]:
        """Items rank, rank + N, rank + 2N, ...: no padding and no item dropped, so the shards of
        all ranks are the set exactly once (sizes differ by at most one)."""
        return list(items[self.rank::self.world_size])

    @contextlib.contextmanager
    def _collective(self, what: str) -> Iterator[None]:
        try:
            yield
        except (RuntimeError, dist.DistError) as err:  # a rank that died or hung: the group's timeout
            raise CCNetError(f"rank {self.rank}: {what} got no answer from every rank within {self.timeout:g} s "
                             f"({_first_line(err)})") from err

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The element-wise sum over ranks (a new tensor on ``tensor``'s device); ``tensor`` itself in a plain run."""
        if not self.distributed:
            return tensor
        work = tensor.detach().to(self.device, copy=True)
        with self._collective("a reduction"):
            dist.all_reduce(work)
        return work.to(tensor.device)

    def all_gather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order."""
        if not self.distributed:
            return [value]
        values: list[Any] = [None] * self.world_size
        with self._collective("gathering"):
            dist.all_gather_object(values, value)
        return values

    def checked(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` on every rank, then an exchange of outcomes: if any rank failed, every
        rank raises RankError with the first failure's one-line message (prefixed by its rank).
        In a plain run ``fn`` is simply called (its errors propagate as they are)."""
        if not self.distributed:
            return fn(*args, **kwargs)
        value, message = None, None
        try:
            value = fn(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - every failure is reported to the other ranks
            message = _first_line(err)
            if not isinstance(err, CCNetError):  # a bug, not a user error: keep its traceback in this rank's log
                traceback.print_exc(file=sys.stderr)
        failed = [(rank, m) for rank, m in enumerate(self.all_gather(message)) if m is not None]
        if failed:
            rank, first = failed[0]
            more = f" (and {len(failed) - 1} other rank{'s' if len(failed) > 2 else ''})" if len(failed) > 1 else ""
            raise RankError(f"rank {rank}: {first}{more}")
        return value

    def node_first(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn`` on each machine's local rank 0, then on its other ranks (checked after each turn), so
        that a checkpoint downloaded into the machine's cache is fetched once; a plain call in a plain run."""
        if not self.distributed:
            return fn(*args, **kwargs)
        first = self.checked(lambda: fn(*args, **kwargs) if self.local_rank == 0 else None)
        rest = self.checked(lambda: None if self.local_rank == 0 else fn(*args, **kwargs))
        return first if self.local_rank == 0 else rest

    def log(self, message: str) -> None:
        """A line on stderr, prefixed with the rank in a distributed run."""
        prefix = f"[rank {self.rank}] " if self.distributed else ""
        print(prefix + message, file=sys.stderr, flush=True)


SINGLE = Group()


@contextlib.contextmanager
def session(device: str = "cpu") -> Iterator[Group]:
    """The process group of a torchrun worker, destroyed on leaving; a plain run gets ``SINGLE``."""
    if not launched():
        yield SINGLE
        return
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    rank_dev, backend = rank_device(device, local_rank)
    seconds = timeout_s()
    if rank_dev.type == "cuda":
        torch.cuda.set_device(rank_dev)
    dist.init_process_group(backend, timeout=timedelta(seconds=seconds))
    try:
        yield Group(rank, world_size, local_rank, rank_dev, backend, seconds)
    finally:
        dist.destroy_process_group()


def one_report(command: Callable[..., int]) -> Callable[..., int]:
    """Wrap a CLI command: a failure every rank agrees on is printed by rank 0 only (the CLI's one
    error line); the other ranks end with the same exit status, silently."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> int:
        try:
            return command(*args, **kwargs)
        except RankError:
            if is_main():
                raise
            return 2

    return run
