"""probe.transfer: :func:`fuse`, layer fusion on a frozen encoder (``probe fuse``); being split
into parts, see ``driver.py``."""
from __future__ import annotations

from .driver import *  # noqa: F401,F403
from .driver import __all__, PAPER, SOURCE_LANG, RUN_VERSION, TASK_LR, FUSION_POOLING, target_split_of  # noqa: F401
