"""A simulated AA model gateway: an in-process aiohttp server on loopback.

It speaks the gateway's HTTP API as documented (``/work/shared/upstream-api.md``, Gateway A)
so that ``genrelay demo`` runs jobs with no key and no network, and tests use it as the
fake gateway with scripted outcomes and faults. It imports nothing of ``bot/``.

Outcomes: ``[fail]`` / ``[refund]`` / ``[slow]`` in a prompt, ``script_next()`` for the next
task, ``finish()`` for a task now, ``inject_fault()`` for the HTTP layer, and ``on_next()``
to run a test's callable when a request arrives (the crash suite kills its client there).

Modules: ``server`` (``SandboxGateway``: routes, lifecycle, test controls), ``tasks`` (the
task model and its clock), ``wire`` (paths, vocabularies, limits, errors), ``parse``
(request bodies), ``views`` (response bodies), ``faults`` (injected faults and hooks),
``media`` (the result files). ``python -m sandbox`` runs one on its own.
"""

from sandbox.faults import InjectedFault, RequestHook
from sandbox.server import SandboxGateway
from sandbox.tasks import (
    DEFAULT_DURATIONS,
    Outcome,
    ProgressCurve,
    SandboxTask,
    TaskFamily,
    TaskScript,
)
from sandbox.wire import (
    CHAT_PATH,
    FILES_PREFIX,
    IMAGES_PATH,
    SORA_CREATE_PATH,
    SORA_POLL_PREFIX,
    TASK_POLL_PREFIX,
    RecordedRequest,
    error_body,
)

__all__ = [
    "CHAT_PATH",
    "DEFAULT_DURATIONS",
    "FILES_PREFIX",
    "IMAGES_PATH",
    "SORA_CREATE_PATH",
    "SORA_POLL_PREFIX",
    "TASK_POLL_PREFIX",
    "InjectedFault",
    "Outcome",
    "ProgressCurve",
    "RecordedRequest",
    "RequestHook",
    "SandboxGateway",
    "SandboxTask",
    "TaskFamily",
    "TaskScript",
    "error_body",
]
