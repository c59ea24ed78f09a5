"""Where the toolkit keeps things on disk, and where data comes from."""
from __future__ import annotations

import os
from pathlib import Path


def probe_home() -> Path:
    """Root of everything the toolkit writes: ``$PROBE_HOME`` or ``~/.cache/probe``."""
    return Path(os.environ.get("PROBE_HOME") or Path.home() / ".cache" / "probe").expanduser()


def data_dir() -> Path:
    """Downloaded corpus files, laid out like the upstream repositories."""
    return probe_home() / "data"


def cache_dir() -> Path:
    """Hidden-state cache entries."""
    return probe_home() / "cache"


def models_dir() -> Path:
    """Converted models (e.g. the dequantised e5-small-q4)."""
    return probe_home() / "models"


def data_mirror() -> str | None:
    """``$PROBE_DATA_MIRROR``: a local folder or an http(s) base URL replacing upstream."""
    value = os.environ.get("PROBE_DATA_MIRROR", "").strip()
    return value or None
