"""Task names: one vocabulary for :func:`probe.layers`, :func:`probe.fuse` and the CLI.

Part-of-speech tagging is ``pos`` everywhere; ``upos`` (the UD tag set's own name) is
accepted as the same task. Each driver records the name its report has always used:
``probe.layers`` keys its probes ``upos`` (the UD probe), ``probe.fuse`` records ``pos``
(the XTREME task), so every saved report stays readable.
"""
from __future__ import annotations

#: names accepted for the same task -> the task's one name in the API
TASK_ALIASES = {"upos": "pos"}


def task_name(name: str) -> str:
    """The API's one name for task ``name`` (``"upos"`` -> ``"pos"``); others unchanged."""
    name = str(name).strip().lower()
    return TASK_ALIASES.get(name, name)
