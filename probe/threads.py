"""torch's intra-op thread count, set for the duration of a block.

>>> with torch_threads(1):          # doctest: +SKIP
...     probe.fit(X, y)             # one core; the old count is restored afterwards
"""
from __future__ import annotations

import contextlib
from typing import Iterator


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """``torch.set_num_threads(n)`` inside the block, the previous count after it (also on
    an error). ``None`` leaves torch's setting alone. The setting is process-wide in torch,
    so other threads running torch at the same time see it too."""
    if n is None:
        yield
        return
    import torch

    saved = torch.get_num_threads()
    if int(n) != saved:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        if torch.get_num_threads() != saved:
            torch.set_num_threads(saved)
