"""Task names: one vocabulary for :func:`probe.layers`, :func:`probe.fuse` and the CLI.

Part-of-speech tagging is ``pos`` everywhere: in every report, result, table, figure and
command output. ``upos`` (the name of UD's tag column) is accepted as input for the same
task, and reports saved when :func:`probe.layers` recorded ``upos`` are read back with
``pos`` (:func:`recorded_task`, :func:`recorded_curve`).

The probing tasks of :func:`probe.layers` are registered in :data:`PROBE_TASKS` as
:class:`ProbeTask` entries, as the XTREME tasks of :func:`probe.fuse` are registered in
:data:`probe.data.xtreme.XTREME_TASKS`; a new probing task needs only its entry.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .registry import Registry

__all__ = ["TASK_ALIASES", "POS", "UPOS_TAGS", "ProbeTask", "PROBE_TASKS", "task_name", "recorded_task",
           "recorded_curve"]

#: names accepted for the same task -> the task's one name in the API
TASK_ALIASES = {"upos": "pos"}
#: part of speech (UD's universal tags): the task :func:`probe.layers` and :func:`probe.fuse` share
POS = "pos"
#: UD's universal part-of-speech tags, the label list of task ``pos`` (probes and XTREME)
UPOS_TAGS = ("ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART",
             "PRON", "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X")


@dataclass(frozen=True)
class ProbeTask:
    """One probing task of :func:`probe.layers`.

    ``column``: the label column it reads from a cache entry (UD's ``upos``, ``deprel``;
    None for language identity, whose labels are the languages); ``labels``: its fixed label
    list, or None for the training entry's own labels; ``universal``: relation subtypes are
    reduced to the universal relation (``nsubj:pass`` -> ``nsubj``). The probes' memoised
    results are keyed on the ``repr`` of every entry (the description is not part of it).
    """

    name: str
    column: str | None
    labels: tuple[str, ...] | None = None
    universal: bool = False
    description: str = field(default="", repr=False, compare=False)


#: The probing tasks, in the order reports list them; ``upos`` is accepted for ``pos``.
PROBE_TASKS = Registry("probe task", aliases=TASK_ALIASES)
PROBE_TASKS.register(POS, ProbeTask(POS, column="upos", labels=UPOS_TAGS,
                                    description="part of speech (UD's 17 universal tags) of each word"))
PROBE_TASKS.register("deprel", ProbeTask("deprel", column="deprel", universal=True,
                                         description="universal dependency relation of each word to its head"))
PROBE_TASKS.register("langid", ProbeTask("langid", column=None,
                                         description="language identity of each PUD word"))


def task_name(name: str) -> str:
    """The API's one name for task ``name`` (``"upos"`` -> ``"pos"``); others unchanged
    (lower-cased), for the registry that then looks them up."""
    name = str(name).strip().lower()
    return TASK_ALIASES.get(name, name)


def recorded_task(name: str) -> str:
    """A task name as reports record it now (a report saved with ``upos`` reads ``pos``)."""
    return TASK_ALIASES.get(name, name)


def recorded_curve(name: str) -> str:
    """A curve or column name whose first word is a task, as reports record it now:
    ``"upos de"`` -> ``"pos de"``, ``"upos_zero_shot"`` -> ``"pos_zero_shot"``; other names
    unchanged."""
    for sep in (" ", "_"):
        head, found, rest = name.partition(sep)
        if found and head in TASK_ALIASES:
            return TASK_ALIASES[head] + sep + rest
    return TASK_ALIASES.get(name, name)
