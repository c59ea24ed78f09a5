"""User-facing errors.

Every error a user can cause (bad input file, unknown language, failed download)
is a :class:`ProbeError`; the CLI prints it as one line and exits with status 2.
"""
from __future__ import annotations


class ProbeError(Exception):
    """An error caused by input or environment, reported to the user as one line."""


class ParameterError(ProbeError, ValueError):
    """A bad estimator or function parameter: a ``ValueError`` (as scikit-learn expects)
    that the CLI still reports as one line."""


class DataFormatError(ProbeError):
    """A malformed input file. The message names the file and the line.

    >>> DataFormatError("bad column count", path="x.conllu", line=3)
    DataFormatError('x.conllu:3: bad column count')
    """

    def __init__(self, problem: str, path: object = None, line: int | None = None):
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + problem)
        self.problem = problem
        self.path = path
        self.line = line


class DownloadError(ProbeError):
    """A file could not be fetched from upstream or the mirror."""


class ChecksumError(DownloadError):
    """A fetched file's sha256 differs from the pinned one."""


class CacheError(ProbeError):
    """A cache entry is missing, corrupt or inconsistent."""


class UnknownNameError(ProbeError, KeyError):
    """A name that no registry entry has (:class:`probe.registry.Registry`); also a
    ``KeyError``, so mapping code (``get``, ``in``) treats it as a missing key."""

    # KeyError's str() quotes its argument; the CLI prints this message as one plain line
    __str__ = Exception.__str__
