"""What produced a result: :func:`versions` of the code and libraries, and :func:`entry_record`,
the record of one cache entry a report names (corpus, files, checksums, cache key)."""
from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import numpy as np

from .. import __version__


def versions() -> dict:
    """Versions of the code and libraries that produced a result (from the installed packages'
    metadata: a warm run need not import torch, transformers and scikit-learn to name them)."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    out = {"probe": __version__, "python": platform.python_version(), "numpy": np.__version__,
           "torch": installed("torch"), "transformers": installed("transformers"),
           "scikit-learn": installed("scikit-learn")}
    try:
        root = Path(__file__).resolve().parents[2]  # the repository
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5).stdout.strip()
        if sha:
            dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "probe"],
                                   capture_output=True, text=True, timeout=5).stdout.strip()
            out["git"] = sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def entry_record(entry) -> dict:
    c = entry.meta["corpus"]
    return {"corpus": c["name"], "lang": c["lang"], "split": c["split"], "sha256": c["sha256"],
            "files": c.get("files", []), "n_sentences": entry.n_sentences, "n_words": entry.n_words,
            "pooling": entry.meta["pooling"], "cache_key": entry.meta["key"],
            "input": entry.input, "flagged_words": int(np.asarray(entry.flagged).sum())}
