"""Which sink shows a platform's jobs and sessions in this process: the latest registered
one that is still there. Several adapters of one platform may share a core (Discord shards,
each under its own lease): each adds its sink and takes out only its own, in any order, and
the platform keeps a sink for as long as one of them runs."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Generic, TypeVar

__all__ = ["SinkRegistry"]

S = TypeVar("S")


class SinkRegistry(Mapping[str, S], Generic[S]):
    """platform -> its sink now (a read-only mapping); `add` and `remove` change it."""

    def __init__(self) -> None:
        self._stacks: dict[str, list[S]] = {}

    def add(self, platform: str, sink: S) -> None:
        stack = self._stacks.setdefault(platform, [])
        if sink in stack:
            stack.remove(sink)
        stack.append(sink)

    def remove(self, platform: str, sink: S | None = None) -> None:
        """Take out `sink` (None: the platform's sink now); the one added before it, if it is
        still there, serves again."""
        stack = self._stacks.get(platform)
        if not stack:
            return
        if sink is None:
            stack.pop()
        elif sink in stack:
            stack.remove(sink)
        if not stack:
            del self._stacks[platform]

    def __getitem__(self, platform: str) -> S:
        stack = self._stacks.get(platform)
        if not stack:
            raise KeyError(platform)
        return stack[-1]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._stacks))

    def __len__(self) -> int:
        return len(self._stacks)
