"""The downloader, against a loopback HTTP server serving the offline mirror."""
from __future__ import annotations

import functools
import hashlib
import http.server
import json
import socket
import threading
from pathlib import Path

import pytest

from probe.data.pins import LASER_COMMIT, SHA256, UD_COMMITS
from probe.data.tatoeba import tatoeba_remote
from probe.data.ud import ud_remote
from probe.download import (
    RemoteFile,
    checksums_path,
    expected_sha256,
    fetch,
    recorded_checksums,
    sha256_file,
    source_for,
)
from probe.errors import ChecksumError, DownloadError
from probe.paths import data_dir

DE_PUD = ("UD_German-PUD", "de_pud-ud-test.conllu")
SMALL = "tatoeba/v1/tatoeba.swg-eng.swg"  # 112 lines


def mirror_sums(mirror: Path) -> dict[str, str]:
    sums = {}
    for line in (mirror / "SHA256SUMS").read_text().splitlines():
        digest, _, relpath = line.partition("  ")
        sums[relpath.strip()] = digest
    return sums


class _Server:
    def __init__(self, root: Path):
        self.requests: list[str] = []
        requests = self.requests

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                requests.append(self.path)
                super().do_GET()

        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=str(root))
        )
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh PROBE_HOME for one test."""
    path = tmp_path / "home"
    monkeypatch.setenv("PROBE_HOME", str(path))
    return path


@pytest.fixture(scope="module")
def http_mirror(mirror):
    """A ThreadingHTTPServer on 127.0.0.1 (port 0) serving the offline mirror."""
    srv = _Server(mirror)
    yield srv
    srv.close()


@pytest.fixture
def server(http_mirror, home, monkeypatch):
    """The HTTP mirror set as PROBE_DATA_MIRROR, with a fresh PROBE_HOME and request log."""
    http_mirror.requests.clear()
    monkeypatch.setenv("PROBE_DATA_MIRROR", http_mirror.url)
    return http_mirror


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith((".part", ".tmp")))


def test_sha256_file(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(b"hello\n" * 100_000)
    assert sha256_file(path) == hashlib.sha256(b"hello\n" * 100_000).hexdigest()


def test_remote_file_rejects_paths_outside_data_dir():
    with pytest.raises(ValueError):
        RemoteFile(relpath="../etc/passwd", url="http://x")
    with pytest.raises(ValueError):
        RemoteFile(relpath="/etc/passwd", url="http://x")


def test_pins_match_the_mirror(mirror):
    sums = mirror_sums(mirror)
    pinned = {k: v for k, v in sums.items() if k.endswith(".conllu") or k.startswith("tatoeba/v1/tatoeba.")}
    assert pinned == SHA256
    assert len([k for k in SHA256 if k.startswith("ud/")]) == 23
    assert len([k for k in SHA256 if k.startswith("tatoeba/")]) == 216


def test_upstream_urls_are_pinned():
    remote = ud_remote(*DE_PUD)
    commit = UD_COMMITS["UD_German-PUD"]
    assert remote.relpath == "ud/UD_German-PUD/de_pud-ud-test.conllu"
    raw = "https://raw.githubusercontent.com/UniversalDependencies"
    assert remote.url == f"{raw}/UD_German-PUD/{commit}/de_pud-ud-test.conllu"
    assert remote.commit == commit and remote.sha256 == SHA256[remote.relpath]
    ja = ud_remote("UD_Japanese-PUD", "ja_pud-ud-test.conllu")
    assert ja.url == f"{raw}/UD_Japanese-PUD/master/ja_pud-ud-test.conllu"
    assert ja.sha256 is None and ja.commit == "master"
    tat = tatoeba_remote("deu", "eng")
    assert tat.relpath == "tatoeba/v1/tatoeba.deu-eng.eng"
    assert tat.url == (f"https://raw.githubusercontent.com/facebookresearch/LASER/{LASER_COMMIT}"
                       "/data/tatoeba/v1/tatoeba.deu-eng.eng")
    assert tat.sha256 == SHA256[tat.relpath]


def test_source_is_upstream_without_mirror(monkeypatch, home):
    monkeypatch.delenv("PROBE_DATA_MIRROR", raising=False)
    remote = ud_remote(*DE_PUD)
    assert source_for(remote) == remote.url
    monkeypatch.setenv("PROBE_DATA_MIRROR", "https://example.org/data/")
    assert source_for(remote) == "https://example.org/data/" + remote.relpath


def test_fetch_over_http_matches_pin(server, mirror, capsys):
    remote = ud_remote(*DE_PUD)
    path = fetch(remote, progress=True)
    assert path == data_dir() / remote.relpath
    assert sha256_file(path) == remote.sha256 == mirror_sums(mirror)[remote.relpath]
    assert path.read_bytes() == (mirror / remote.relpath).read_bytes()
    assert server.requests == ["/" + remote.relpath]
    assert leftovers(data_dir()) == []
    assert not checksums_path().exists()  # pinned files are not recorded
    # already there and verified: no second request
    assert fetch(remote, progress=False) == path
    assert len(server.requests) == 1


def test_corrupt_local_copy_is_fetched_again(server, capsys):
    remote = ud_remote(*DE_PUD)
    path = fetch(remote, progress=False)
    path.write_bytes(b"garbage")
    assert fetch(remote, progress=False) == path
    assert sha256_file(path) == remote.sha256
    assert len(server.requests) == 2
    assert "does not match" in capsys.readouterr().err


def test_checksum_mismatch_leaves_nothing(server):
    real = tatoeba_remote("swg", "swg")
    wrong = "0" * 64
    remote = RemoteFile(relpath=real.relpath, url=real.url, sha256=wrong, commit=real.commit)
    with pytest.raises(ChecksumError) as info:
        fetch(remote, progress=False)
    message = str(info.value)
    assert "checksum mismatch" in message
    assert real.relpath in message
    assert f"expected sha256 {wrong}" in message
    assert f"got {real.sha256}" in message
    assert not (data_dir() / real.relpath).exists()
    assert leftovers(data_dir()) == []


def test_http_404_names_url(server):
    remote = RemoteFile(relpath="ud/UD_Nowhere-PUD/xx_pud-ud-test.conllu", url="https://example.invalid/x")
    with pytest.raises(DownloadError) as info:
        fetch(remote, progress=False)
    assert not isinstance(info.value, ChecksumError)
    message = str(info.value)
    assert f"{server.url}/ud/UD_Nowhere-PUD/xx_pud-ud-test.conllu" in message
    assert "404" in message
    assert not (data_dir() / remote.relpath).exists()
    assert leftovers(data_dir()) == []


def test_connection_refused_names_url(home, monkeypatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("PROBE_DATA_MIRROR", f"http://127.0.0.1:{port}")
    remote = ud_remote(*DE_PUD)
    with pytest.raises(DownloadError) as info:
        fetch(remote, progress=False)
    assert f"http://127.0.0.1:{port}/{remote.relpath}" in str(info.value)
    assert leftovers(data_dir()) == []


def test_unpinned_file_is_accepted_once_and_recorded(server, mirror, capsys):
    real = tatoeba_remote("swg", "swg")
    remote = RemoteFile(relpath=real.relpath, url=real.url, sha256=None, commit="master")
    assert expected_sha256(remote) is None
    path = fetch(remote, progress=False)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no pinned sha256" in err[0] and real.relpath in err[0]
    assert recorded_checksums() == {real.relpath: real.sha256}
    assert json.loads(checksums_path().read_text()) == {real.relpath: real.sha256}
    assert expected_sha256(remote) == real.sha256
    assert leftovers(data_dir()) == []

    # later fetches verify against the recorded value, silently
    assert fetch(remote, progress=False) == path
    assert capsys.readouterr().err == ""
    assert len(server.requests) == 1

    # a changed upstream file is refused once recorded
    path.unlink()
    checksums_path().write_text(json.dumps({real.relpath: "f" * 64}))
    with pytest.raises(ChecksumError, match="recorded in"):
        fetch(remote, progress=False)
    assert not path.exists()
    assert leftovers(data_dir()) == []


def test_recording_keeps_other_entries(server, capsys):
    for side in ("swg", "eng"):
        real = tatoeba_remote("swg", side)
        fetch(RemoteFile(relpath=real.relpath, url=real.url), progress=False)
    assert set(recorded_checksums()) == {"tatoeba/v1/tatoeba.swg-eng.swg", "tatoeba/v1/tatoeba.swg-eng.eng"}


def test_corrupt_checksums_file_is_a_download_error(server):
    checksums_path().parent.mkdir(parents=True)
    checksums_path().write_text("{not json")
    real = tatoeba_remote("swg", "swg")
    with pytest.raises(DownloadError, match="not valid JSON"):
        fetch(RemoteFile(relpath=real.relpath, url=real.url), progress=False)


def test_local_folder_mirror(mirror, home, monkeypatch):
    monkeypatch.setenv("PROBE_DATA_MIRROR", str(mirror))
    remote = tatoeba_remote("swg", "eng")
    path = fetch(remote, progress=False)
    assert path == data_dir() / remote.relpath
    assert sha256_file(path) == remote.sha256
    assert leftovers(data_dir()) == []
    # a file the mirror folder lacks is an error naming the mirror, not a silent upstream fetch
    missing = ud_remote("UD_Japanese-PUD", "ja_pud-ud-test.conllu")
    with pytest.raises(DownloadError, match="PROBE_DATA_MIRROR"):
        fetch(missing, progress=False)
    assert not (data_dir() / missing.relpath).exists()
    assert leftovers(data_dir()) == []


def test_corpus_loads_over_http(server):
    from probe.data import load_corpus

    corpus = load_corpus("tatoeba", "swg", "xx", progress=False)
    assert len(corpus) == 112
    assert [f["sha256"] for f in corpus.files] == [SHA256["tatoeba/v1/tatoeba.swg-eng.swg"],
                                                   SHA256["tatoeba/v1/tatoeba.swg-eng.eng"]]
    assert len(server.requests) == 2
