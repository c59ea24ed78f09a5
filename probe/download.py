"""Fetch corpus files into :func:`probe.paths.data_dir`, verified by sha256.

A :class:`RemoteFile` names a file by its path in the upstream layout
(``ud/UD_German-PUD/de_pud-ud-test.conllu``), its raw upstream URL pinned to a commit
and, where known, its sha256. :func:`fetch` returns the local copy, getting it from

* ``$PROBE_DATA_MIRROR`` when set: a local folder (the file is copied from
  ``MIRROR/relpath``) or an http(s) base URL (``BASE/relpath`` is downloaded); the
  mirror replaces upstream, so a file missing there is an error, not a fallback;
* otherwise the upstream URL.

Every file is written to a temporary file in its final folder, verified and moved into
place with :func:`os.replace`, so no partial or unverified file is ever visible. A file
without a pinned sha256 is accepted the first time: its sha256 is recorded in
``data_dir()/checksums.json`` (with a one-line notice on stderr) and verified against on
every later fetch.
"""
from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from probe.errors import ChecksumError, DownloadError
from probe.files import atomic_open, atomic_write_json, sha256_file
from probe.paths import data_dir, data_mirror

__all__ = [
    "RemoteFile",
    "fetch",
    "sha256_file",
    "expected_sha256",
    "recorded_checksums",
    "checksums_path",
    "source_for",
]

_CHUNK = 1 << 20
_TIMEOUT_S = 60
_USER_AGENT = "layerprobe-downloader/0.1"


@dataclass(frozen=True)
class RemoteFile:
    """A corpus file: its path in the mirror/upstream layout, pinned URL and checksum.

    ``relpath``: e.g. ``"ud/UD_German-PUD/de_pud-ud-test.conllu"``; also its path under
    :func:`probe.paths.data_dir` and under a mirror.
    ``url``: the raw upstream URL at ``commit``.
    ``sha256``: the pinned checksum, or None (accepted once, then recorded).
    ``commit``: the upstream commit (or branch name when none is pinned).
    """

    relpath: str
    url: str
    sha256: str | None = None
    commit: str | None = None

    def __post_init__(self) -> None:
        parts = Path(self.relpath).parts
        if not parts or Path(self.relpath).is_absolute() or ".." in parts:
            raise ValueError(f"relpath must be a relative path inside the data folder: {self.relpath!r}")

    @property
    def name(self) -> str:
        return Path(self.relpath).name

    @property
    def local_path(self) -> Path:
        """Where :func:`fetch` stores it."""
        return data_dir() / self.relpath


# ---------------------------------------------------------------------------
# recorded checksums of files without a pinned one


def checksums_path() -> Path:
    """The JSON sidecar ``{relpath: sha256}`` of files accepted without a pinned checksum."""
    return data_dir() / "checksums.json"


def recorded_checksums() -> dict[str, str]:
    """The recorded checksums; an unreadable sidecar is an error, a missing one is empty."""
    path = checksums_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise DownloadError(f"cannot read recorded checksums {path}: {exc}") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise DownloadError(
            f"recorded checksums {path} are not valid JSON ({exc}); delete the file to record them anew"
        ) from exc
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise DownloadError(f"recorded checksums {path} must be a JSON object of strings")
    return data


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock next to ``path`` (no-op where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# Inside :func:`deferred_checksums`, checksums of unpinned files are only collected here and
# recorded when the block ends without an error (i.e. once the files have parsed).
_DEFERRED: contextvars.ContextVar[list | None] = contextvars.ContextVar("probe_deferred_checksums",
                                                                         default=None)


@contextlib.contextmanager
def deferred_checksums() -> Iterator[None]:
    """Record the checksums of unpinned files fetched inside the block only if the block
    succeeds: a file that fails to parse is not pinned, so a fixed version is accepted."""
    outer = _DEFERRED.get()
    pending: list = []
    token = _DEFERRED.set(pending)
    try:
        yield
    finally:
        _DEFERRED.reset(token)
    if outer is not None:  # nested: the outermost block decides
        outer.extend(pending)
        return
    for relpath, digest, message in pending:
        _record_checksum(relpath, digest, defer=False)
        _notice(message)


def _record_checksum(relpath: str, digest: str, *, defer: bool = True, message: str = "") -> None:
    pending = _DEFERRED.get() if defer else None
    if pending is not None:
        pending.append((relpath, digest, message))
        return
    path = checksums_path()
    with _locked(path):
        data = recorded_checksums()
        data[relpath] = digest
        atomic_write_json(path, data, indent=2, sort_keys=True)


def expected_sha256(remote: RemoteFile) -> str | None:
    """The checksum a file must have: the pinned one, else the recorded one, else None."""
    if remote.sha256:
        return remote.sha256.lower()
    return recorded_checksums().get(remote.relpath)


# ---------------------------------------------------------------------------
# sources


def _is_url(value: str) -> bool:
    return value.lower().startswith(("http://", "https://"))


def source_for(remote: RemoteFile) -> str:
    """Where :func:`fetch` would get ``remote`` from: a URL or a local path."""
    mirror = data_mirror()
    if mirror is None:
        return remote.url
    if _is_url(mirror):
        return mirror.rstrip("/") + "/" + remote.relpath
    return str(Path(mirror).expanduser() / remote.relpath)


def _copy_local(source: Path, out: BinaryIO, digest: "hashlib._Hash") -> None:
    try:
        with open(source, "rb") as fh:
            for chunk in iter(lambda: fh.read(_CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
    except FileNotFoundError as exc:
        raise DownloadError(
            f"{source} not found in the data mirror PROBE_DATA_MIRROR={data_mirror()}; "
            f"add it there or unset PROBE_DATA_MIRROR to download it from upstream"
        ) from exc
    except OSError as exc:
        raise DownloadError(f"cannot read {source} from the data mirror: {exc}") from exc


def _download(url: str, out: BinaryIO, digest: "hashlib._Hash", *, label: str, progress: bool) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    try:
        response = urllib.request.urlopen(request, timeout=_TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise DownloadError(f"download failed: {url}: HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise DownloadError(f"download failed: {url}: cannot connect ({exc.reason})") from exc
    except (OSError, ValueError) as exc:  # timeouts, malformed URLs
        raise DownloadError(f"download failed: {url}: {exc}") from exc
    with response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        received = 0
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label,
                       file=sys.stderr, leave=False)
        try:
            while True:
                try:
                    chunk = response.read(_CHUNK)
                except OSError as exc:
                    raise DownloadError(f"download failed: {url}: connection lost ({exc})") from exc
                if not chunk:
                    break
                digest.update(chunk)
                out.write(chunk)
                received += len(chunk)
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
    if total is not None and received != total:
        raise DownloadError(f"download failed: {url}: got {received} of {total} bytes")


# ---------------------------------------------------------------------------
# fetch


def _notice(message: str) -> None:
    print(f"probe: {message}", file=sys.stderr)


def fetch(remote: RemoteFile, *, progress: bool = True) -> Path:
    """The verified local copy of ``remote`` under :func:`probe.paths.data_dir`.

    Returns at once when the file is already there with the expected checksum;
    otherwise copies/downloads it (see the module docstring). Raises
    :class:`~probe.errors.DownloadError` (HTTP error, unreachable host, file missing
    from the mirror) or :class:`~probe.errors.ChecksumError` (sha256 differs from the
    pinned or recorded one; nothing is left in place).
    """
    dest = remote.local_path
    expected = expected_sha256(remote)
    if dest.is_file():
        if expected is None:
            # Never accepted (e.g. it failed to parse): take the source again if it is there,
            # since the user may have fixed it; else this copy.
            try:
                return _fetch_into(remote, dest, None, progress=progress)
            except DownloadError:
                digest = sha256_file(dest)
                _record(remote, digest, f"{remote.relpath} has no pinned sha256; recorded {digest} "
                                        f"in {checksums_path()}")
                return dest
        if sha256_file(dest) == expected:
            return dest
        _notice(f"{dest} does not match its sha256 {expected}; fetching it again")

    return _fetch_into(remote, dest, expected, progress=progress)


def _record(remote: RemoteFile, digest: str, message: str) -> None:
    if _DEFERRED.get() is not None:
        _record_checksum(remote.relpath, digest, message=message)
    else:
        _record_checksum(remote.relpath, digest, defer=False)
        _notice(message)


def _fetch_into(remote: RemoteFile, dest: Path, expected: str | None, *, progress: bool) -> Path:
    source = source_for(remote)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create {dest.parent}: {exc}") from exc
    digest = hashlib.sha256()
    with atomic_open(dest) as out:  # a mismatch raised inside: the file never appears
        if _is_url(source):
            _download(source, out, digest, label=remote.name, progress=progress)
        else:
            _copy_local(Path(source), out, digest)
        got = digest.hexdigest()
        if expected is not None and got != expected:
            how = "pinned" if remote.sha256 else f"recorded in {checksums_path()}"
            raise ChecksumError(
                f"checksum mismatch for {remote.relpath} from {source}: "
                f"expected sha256 {expected} ({how}), got {got}; the file was not kept"
            )
    if expected is None:
        _record(remote, got, f"{remote.relpath} has no pinned sha256; accepted it once and recorded {got} "
                             f"in {checksums_path()} (later fetches must match)")
    return dest
