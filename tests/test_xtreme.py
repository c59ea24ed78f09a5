"""XTREME readers (real mirror files and malformed fixtures), root resolution and metrics."""
from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from probe.data import xtreme as X
from probe.errors import DataFormatError, DownloadError, ProbeError


@pytest.fixture(scope="module")
def root(mirror) -> Path:
    path = mirror / "xtreme"
    if not path.is_dir():
        pytest.skip("the mirror has no xtreme/ folder")
    return path


# --------------------------------------------------------------------------- real files


def test_xtreme_root_prefers_a_local_mirror(mirror, monkeypatch, tmp_path):
    monkeypatch.setenv("PROBE_DATA_MIRROR", str(mirror))
    monkeypatch.setenv("PROBE_XTREME_DIR", str(tmp_path))
    assert X.xtreme_root() == mirror / "xtreme"
    monkeypatch.setenv("PROBE_DATA_MIRROR", "https://example.org/mirror")
    assert X.xtreme_root() == tmp_path
    monkeypatch.delenv("PROBE_XTREME_DIR")
    monkeypatch.setenv("PROBE_HOME", str(tmp_path / "home"))
    assert X.xtreme_root() == tmp_path / "home" / "data" / "xtreme"


def test_pos(root):
    train = X.read_task_split(root, "pos", "train")
    assert len(train) == 21253
    assert sum(len(words) for words, _ in train) == 375194
    assert all(len(words) == len(tags) for words, tags in train)
    assert {t for _, tags in train for t in tags} == set(X.UPOS_TAGS)
    assert train[0][0][:3] == ["Al", "-", "Zaman"] and train[0][1][:2] == ["PROPN", "PUNCT"]
    dev = X.read_task_split(root, "pos", "dev")
    assert len(dev) == 3974
    fr = X.read_task_split(root, "pos", "test", "fr")
    assert len(fr) == 5009 and sum(len(w) for w, _ in fr) == 79620
    assert "th" in X.available_languages(root, "pos", "test")


def test_ner(root):
    train = X.read_task_split(root, "ner", "train")
    assert len(train) == 20000 and sum(len(w) for w, _ in train) == 160394
    assert {t for _, tags in train for t in tags} == set(X.PANX_TAGS)
    zh = X.read_task_split(root, "ner", "test", "zh")
    assert len(zh) == 10000
    assert X.task_def("ner").metric == "f1"


def test_xnli(root):
    train = X.read_task_split(root, "xnli", "train")
    assert len(train) == 10071
    dev = X.read_task_split(root, "xnli", "dev")
    assert len(dev) == 2490
    assert {label for *_, label in dev} == set(X.XNLI_LABELS)
    a, b, label = dev[0]
    assert a == ["And", "he", "said,", "Mama,", "I'm", "home."] and label == "neutral"
    th = X.read_task_split(root, "xnli", "test", "th")
    assert len(th) == 5010 and all(words_a and words_b for words_a, words_b, _ in th)


def test_pawsx_trains_on_a_seeded_share_of_english_dev(root):
    whole = X.read_split(root, "pawsx", "dev", "en")
    assert len(whole) == 2000 and {lab for *_, lab in whole} == {"0", "1"}
    train = X.read_task_split(root, "pawsx", "train", seed=0)
    dev = X.read_task_split(root, "pawsx", "dev", seed=0)
    assert len(train) + len(dev) == 2000 and 1490 <= len(train) <= 1510
    key = lambda ex: (tuple(ex[0]), tuple(ex[1]))  # noqa: E731
    assert not {key(e) for e in train} & {key(e) for e in dev}
    assert X.read_task_split(root, "pawsx", "train", seed=0) == train
    assert X.read_task_split(root, "pawsx", "train", seed=1) != train
    # the held-out share is the same lines in every (line-parallel) language
    de = X.read_task_split(root, "pawsx", "dev", "de", seed=0)
    de_whole = X.read_split(root, "pawsx", "dev", "de")
    held = [i for i, ex in enumerate(whole) if key(ex) in {key(e) for e in dev}]
    assert de == [de_whole[i] for i in held]
    assert len(X.read_task_split(root, "pawsx", "test", "zh")) == 2000


def test_missing_files_list_what_exists(root, tmp_path):
    with pytest.raises(ProbeError, match=r"available in .*test-de, test-zh") as info:
        X.read_task_split(root, "pawsx", "test", "fr")
    assert "leak-free" in str(info.value)
    with pytest.raises(ProbeError, match="dev-en"):
        X.read_task_split(root, "pos", "test", "xx")
    with pytest.raises(ProbeError, match="PROBE_XTREME_DIR"):
        X.read_task_split(tmp_path, "pos", "train")
    with pytest.raises(ProbeError, match="unknown XTREME task.*choose from pos \\(or upos\\), ner, xnli, pawsx"):
        X.read_task_split(root, "qa", "train")
    with pytest.raises(ProbeError, match="target language"):
        X.read_task_split(root, "pos", "test")
    with pytest.raises(ProbeError, match="unknown split"):
        X.read_task_split(root, "pos", "validation")


# --------------------------------------------------------------------------- malformed files


def _write(tmp_path: Path, task: str, name: str, text: str) -> Path:
    folder = tmp_path / X.task_def(task).folder
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("text, line, message", [
    ("The\tDET\ncat\tNOUN\tX\n", 2, "expected 2 tab-separated columns"),
    ("The\tDET\n\ncat\n", 3, "no tag column"),
    ("The\tDET\ncat\tNOUNISH\n", 2, "unknown tag 'NOUNISH'"),
    ("The\tDET\n\tNOUN\n", 2, "empty token"),
])
def test_token_file_errors_name_file_and_line(tmp_path, text, line, message):
    path = _write(tmp_path, "pos", "train-en.tsv", text)
    with pytest.raises(DataFormatError, match=message) as info:
        X.read_task_split(tmp_path, "pos", "train")
    assert info.value.path == path and info.value.line == line
    assert str(info.value).startswith(f"{path}:{line}: ")


def test_token_file_tolerates_crlf_and_blank_runs(tmp_path):
    _write(tmp_path, "ner", "test-xx.tsv", "Jo\tB-PER\r\nSmith\tI-PER\r\n\r\n\r\nin\tO\r\n")
    assert X.read_task_split(tmp_path, "ner", "test", "xx") == [
        (["Jo", "Smith"], ["B-PER", "I-PER"]), (["in"], ["O"])]


@pytest.mark.parametrize("text, line, message", [
    ("a b\tc d\tneutral\na b\tc d\n", 2, "expected 3 tab-separated columns, found 2"),
    ("a b\tc d\tneutral\n\na\tb\tmaybe\n", 3, "unknown label 'maybe'"),
    ("a b\t \tneutral\n", 1, "empty sentence"),
])
def test_pair_file_errors_name_file_and_line(tmp_path, text, line, message):
    path = _write(tmp_path, "xnli", "test-xx.tsv", text)
    with pytest.raises(DataFormatError, match=message) as info:
        X.read_task_split(tmp_path, "xnli", "test", "xx")
    assert info.value.path == path and info.value.line == line


def test_pair_file_header_is_skipped_and_used(tmp_path):
    _write(tmp_path, "pawsx", "test-xx.tsv",
           "id\tsentence1\tsentence2\tlabel\n7\tA  b\tc\t1\n8\t你好世界\t再见\t0\n")
    assert X.read_task_split(tmp_path, "pawsx", "test", "xx") == [
        (["A", "b"], ["c"], "1"), (["你好世界"], ["再见"], "0")]
    _write(tmp_path, "xnli", "test-xx.tsv", "premise\thypothesis\tgold_label\na\tb\tentailment\n")
    assert X.read_task_split(tmp_path, "xnli", "test", "xx") == [(["a"], ["b"], "entailment")]


# --------------------------------------------------------------------------- metrics


def test_metrics():
    assert X.accuracy(["a", "b", "c", "d"], ["a", "b", "x", "d"]) == 0.75
    assert X.accuracy([["a", "b"], ["c"]], [["a", "x"], ["c"]]) == pytest.approx(2 / 3)
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG"]]
    assert X.entity_f1(gold, gold) == 1.0
    pred = [["B-PER", "O", "O", "B-LOC"], ["O", "B-ORG"]]  # PER span cut short: 2 of 3 right
    assert X.entity_f1(gold, pred) == pytest.approx(2 / 3)
    assert X.evaluate("ner", gold, pred) == pytest.approx(2 / 3)
    assert X.evaluate("pos", [["A", "B"]], [["A", "A"]]) == 0.5
    with pytest.raises(ProbeError):
        X.entity_f1(gold, [["O"]])
    assert list(X.label_ids("xnli", ["neutral", "entailment"])) == [1, 0]
    with pytest.raises(ProbeError):
        X.label_ids("pawsx", ["2"])


# --------------------------------------------------------------------------- export


def test_export_without_datasets_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(ProbeError, match="datasets"):
        X.export_from_hub("pos", ["en"], tmp_path)


class _Names:
    def __init__(self, names):
        self.names = names


class _Seq:
    def __init__(self, feature):
        self.feature = feature


class _FakeSplit(list):
    def __init__(self, rows, features):
        super().__init__(rows)
        self.features = features


def _fake_datasets(calls):
    def load_dataset(name, config, split):
        calls.append((name, config, split))
        if name == "google/xtreme":
            if split == "test":
                raise ValueError('Unknown split "test"')
            rows = [{"tokens": ["Hello", "world"], "pos_tags": [7, 7]},
                    {"tokens": ["a\tb"], "pos_tags": [5]}]
            return _FakeSplit(rows, {"pos_tags": _Seq(_Names(list(X.UPOS_TAGS)))})
        if name == "facebook/xnli":
            rows = [{"premise": "It rains.", "hypothesis": "Wet\nstreets.", "label": 0},
                    {"premise": "x", "hypothesis": "y", "label": -1}]
            return _FakeSplit(rows, {"label": _Names(list(X.XNLI_LABELS))})
        raise ConnectionError("offline")

    return types.SimpleNamespace(load_dataset=load_dataset)


def test_export_from_hub_writes_the_download_layout(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setitem(sys.modules, "datasets", _fake_datasets(calls))
    written = X.export_from_hub("pos", ["en"], tmp_path)
    assert [p.name for p in written] == ["train-en.tsv", "dev-en.tsv"]  # no test split
    assert ("google/xtreme", "udpos.English", "validation") in calls
    assert X.read_task_split(tmp_path, "pos", "train") == [
        (["Hello", "world"], ["NOUN", "NOUN"]), (["a b"], ["DET"])]
    X.export_from_hub("xnli", ["en"], tmp_path, splits=["dev"])
    assert X.read_task_split(tmp_path, "xnli", "dev") == [
        (["It", "rains."], ["Wet", "streets."], "entailment")]  # unlabelled row dropped
    with pytest.raises(DownloadError, match="offline"):
        X.export_from_hub("pawsx", ["en"], tmp_path)
