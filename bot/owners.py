"""Which process owns a job: each process's name (host and pid), written on the jobs it
makes and claims, and whether the process a name belongs to may still be running (a job
whose owner died is recovered by another, a lease it held is taken over).

A process on this host is alive while its pid is (the kernel tells at once); one on
another host while its heartbeat in the store (bot/replicas.py) is fresh, since only its
own host could look at its pid."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterable

from bot.constants import OWNER_STALE_S
from bot.models import Replica

__all__ = ["Owners", "pid_alive", "process_owner"]


def process_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Owners:
    """This process's name, and which other processes sharing the store still run: one on
    this host while its pid does, one elsewhere while its latest heartbeat (as last read
    by `seen`) is at most `stale_s` old. A name never seen is gone."""

    def __init__(
        self,
        name: str | None = None,
        *,
        host: str | None = None,
        stale_s: float = OWNER_STALE_S,
        clock: Callable[[], float] = time.time,
        pid_alive: Callable[[int], bool] = pid_alive,
    ) -> None:
        self.name = name or process_owner()
        self.host = host if host is not None else socket.gethostname()
        self.stale_s = stale_s
        self._clock = clock
        self._pid_alive = pid_alive
        self._beats: dict[str, float] = {}

    def seen(self, replicas: Iterable[Replica]) -> None:
        """The heartbeats as the store holds them now."""
        self._beats = {r.name: r.heartbeat_at for r in replicas}

    def alive(self, owner: str) -> bool:
        """Whether `owner` may still be running (this process is)."""
        if owner == self.name:
            return True
        host, _, pid = owner.rpartition(":")
        if not host:
            return False
        if host == self.host:
            return pid.isdigit() and self._pid_alive(int(pid))
        beat = self._beats.get(owner)
        return beat is not None and self._clock() - beat <= self.stale_s

    def another_alive(self, owner: str) -> bool:
        """Whether another process by that name may be running: `alive`, but this very
        name is not another (at start, a job under it is from a past life, a container's
        pid 1 again; a `run`'s store claims its own console jobs, `demo`'s)."""
        return owner != self.name and self.alive(owner)
