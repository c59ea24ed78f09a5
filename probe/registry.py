"""One small registry type for every named thing a user can pick.

Tasks (:data:`probe.tasks.PROBE_TASKS`, :data:`probe.data.xtreme.XTREME_TASKS`), corpora
(:data:`probe.data.CORPORA`), encoders (:data:`probe.encoders.ENCODERS`), perturbations
(:data:`probe.perturb.PERTURBATIONS`), architecture presets and their tokenizers
(:data:`probe.presets.PRESETS`, :data:`probe.presets.TOKENIZERS`) and analyses
(:data:`probe.analyses.ANALYSES`) are each a :class:`Registry`: register by name, look up by
name (an unknown name is one :class:`~probe.errors.ProbeError` listing the valid ones),
iterate over the names.

>>> SIZES = Registry("size", aliases={"s": "small"})
>>> SIZES.register("small", 1)
1
>>> SIZES["S"], SIZES.names(), "medium" in SIZES
(1, ['small'], False)
>>> SIZES["medium"]
Traceback (most recent call last):
...
probe.errors.UnknownNameError: unknown size 'medium'; choose from small (or s)
"""
from __future__ import annotations

import importlib
from collections.abc import MutableMapping
from typing import Iterator

from .errors import UnknownNameError

__all__ = ["Registry"]


class _Lazy:
    """A registered module imported on first lookup (e.g. an analysis script)."""

    def __init__(self, module: str):
        self.module = module


class Registry(MutableMapping):
    """Named entries of one ``kind`` (``"corpus"``, ``"probe task"``, ...), in registration order.

    A mapping: ``reg[name]``, ``name in reg``, ``reg.get(name)``, iteration over the names,
    ``reg[name] = value`` (replaces; tests use it to add a stand-in) and ``del reg[name]``.

    ``aliases``: other names accepted for an entry (``{"upos": "pos"}``); a lookup answers
    the entry, :meth:`canonical` its registered name. ``fold_case``: names are matched
    case-insensitively (not for encoders: Hugging Face ids are case-sensitive).
    """

    def __init__(self, kind: str, *, aliases: dict[str, str] | None = None, fold_case: bool = True):
        self.kind = kind
        self.fold_case = fold_case
        self._entries: dict[str, object] = {}
        self._aliases = {self._norm(a): self._norm(n) for a, n in (aliases or {}).items()}

    def _norm(self, name) -> str:
        name = str(name).strip()
        return name.lower() if self.fold_case else name

    # -- registering
    def register(self, name: str, value=None, *, module: str | None = None, aliases=()):
        """Register ``value`` (or, with ``module``, that module, imported on first lookup)
        as ``name``, also found under ``aliases``; returns ``value``. Without ``value`` and
        ``module``, a decorator. A name registered twice is a programming error (``ValueError``)."""
        if value is None and module is None:
            return lambda obj: self.register(name, obj, aliases=aliases)
        key = self._norm(name)
        others = [self._norm(a) for a in aliases if self._norm(a) != key]
        for k in [key, *others]:
            if k in self._entries or k in self._aliases:
                raise ValueError(f"{self.kind} {k!r} is already registered")
        self._entries[key] = _Lazy(module) if module is not None else value
        self._aliases.update({a: key for a in others})
        return value

    # -- looking up
    def canonical(self, name) -> str:
        """The registered name of ``name`` (an alias resolved, case folded); one clear
        :class:`~probe.errors.ProbeError` listing the valid names when unknown."""
        key = self._norm(name)
        key = self._aliases.get(key, key)
        if key not in self._entries:
            raise UnknownNameError(f"unknown {self.kind} {str(name).strip()!r}; choose from {self.listing()}")
        return key

    def __getitem__(self, name):
        key = self.canonical(name)
        value = self._entries[key]
        if isinstance(value, _Lazy):
            value = self._entries[key] = importlib.import_module(value.module)
        return value

    def __contains__(self, name) -> bool:
        key = self._norm(name)
        return self._aliases.get(key, key) in self._entries

    def names(self) -> list[str]:
        """The registered names, in registration order (aliases not included)."""
        return list(self._entries)

    def listing(self) -> str:
        """``"pos (or upos), deprel, langid"``: the names with their aliases, for messages."""
        alias_of: dict[str, list[str]] = {}
        for alias, name in self._aliases.items():
            alias_of.setdefault(name, []).append(alias)
        return ", ".join(n + (f" (or {', '.join(alias_of[n])})" if n in alias_of else "")
                         for n in self._entries) or "(none registered)"

    # -- the rest of the mapping protocol
    def __setitem__(self, name, value) -> None:
        self._entries[self._norm(name)] = value

    def __delitem__(self, name) -> None:
        key = self._norm(name)
        if key not in self._entries:
            raise KeyError(name)
        del self._entries[key]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"<{self.kind} registry: {self.listing()}>"
