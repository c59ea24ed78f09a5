"""Shared test setup.

Every test session gets its own ``PROBE_HOME`` (so no test reads a user's cache) and,
when the offline mirror ``../shared/data`` exists, ``PROBE_DATA_MIRROR`` points at it.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MIRROR = (REPO / ".." / "shared" / "data").resolve()


def pytest_configure(config):
    if not os.environ.get("PROBE_DATA_MIRROR") and MIRROR.is_dir():
        os.environ["PROBE_DATA_MIRROR"] = str(MIRROR)
    if not os.environ.get("PROBE_TEST_KEEP_HOME"):
        import tempfile

        os.environ["PROBE_HOME"] = tempfile.mkdtemp(prefix="probe-test-home-")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def mirror() -> Path:
    """The offline data mirror; tests that need real data skip without it."""
    path = Path(os.environ.get("PROBE_DATA_MIRROR", MIRROR))
    if not path.is_dir():
        pytest.skip("offline data mirror ../shared/data not found")
    return path
