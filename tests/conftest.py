"""Shared test setup.

Every test session gets its own ``PROBE_HOME`` (so no test reads a user's cache), removed
when the session ends (it holds ~2 GB of converted model and cache entries; set
``PROBE_TEST_KEEP_HOME=1`` to use your ``PROBE_HOME`` instead and keep it), and, when the
offline mirror ``../shared/data`` exists, ``PROBE_DATA_MIRROR`` points at it.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MIRROR = (REPO / ".." / "shared" / "data").resolve()
_SESSION_HOME: list[str] = []  # the temporary PROBE_HOME this session created


def pytest_configure(config):
    if not os.environ.get("PROBE_DATA_MIRROR") and MIRROR.is_dir():
        os.environ["PROBE_DATA_MIRROR"] = str(MIRROR)
    if not os.environ.get("PROBE_TEST_KEEP_HOME"):
        import tempfile

        _SESSION_HOME.append(tempfile.mkdtemp(prefix="probe-test-home-"))
        os.environ["PROBE_HOME"] = _SESSION_HOME[-1]
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_unconfigure(config):
    import shutil

    while _SESSION_HOME:
        shutil.rmtree(_SESSION_HOME.pop(), ignore_errors=True)


@pytest.fixture(scope="session")
def mirror() -> Path:
    """The offline data mirror; tests that need real data skip without it."""
    path = Path(os.environ.get("PROBE_DATA_MIRROR", MIRROR))
    if not path.is_dir():
        pytest.skip("offline data mirror ../shared/data not found")
    return path
