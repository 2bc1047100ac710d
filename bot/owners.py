"""Which process owns a job: each process's name (host and pid), written on the jobs it
makes and claims, and whether the process a name belongs to may still be running (a job
whose owner died is recovered by another)."""

from __future__ import annotations

import os
import socket

__all__ = ["owner_alive", "process_owner"]


def process_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_alive(owner: str) -> bool:
    """Whether the process named by `owner` may still be running. Another host's process
    counts as alive: only its own host can tell."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return host != socket.gethostname() and bool(host)
    if int(pid) == os.getpid():
        return False  # a job this very process owns before recovery is from a past life
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
