"""Memoised results are keyed on the code that computed them: an edit never reuses old numbers."""
from __future__ import annotations

import importlib
import inspect
import json
import sys
from pathlib import Path

import pytest

from probe import cache
from probe.cache import code_version, memoized

sys.path.insert(0, str(Path(__file__).resolve().parent))


def test_code_version_follows_the_source(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    mod_file = tmp_path / "memo_subject.py"
    mod_file.write_text("def score(x):\n    return x + 1\n")
    mod = importlib.import_module("memo_subject")
    calls = []

    def run():
        return memoized("test-subject", {"x": 1}, lambda: calls.append(1) or mod.score(1), code=(mod.score,))

    assert run() == 2 and run() == 2 and len(calls) == 1  # the second call is memoised
    v1 = code_version(mod.score)
    mod_file.write_text("def score(x):\n    return x + 2\n")  # the body edited
    mod = importlib.reload(mod)
    assert code_version(mod.score) != v1
    assert run() == 3 and len(calls) == 2
    assert code_version(mod.score) == code_version(mod.score)
    assert code_version("a") != code_version("b") and code_version(mod) != code_version()


@pytest.mark.parametrize("edit", ["probe_eval"])
def test_editing_the_probe_evaluation_function_invalidates_its_memoised_results(mirror, tmp_path,
                                                                               monkeypatch, edit):
    from tiny import tiny_spec

    from probe import layerwise
    from probe.layerwise import driver

    spec = tiny_spec(max_positions=512, layers=2, hidden=16, seed=11, name="tiny-results")

    def run():
        return layerwise.layers("de", model=spec, tasks="upos,langid", train=("ud", "dev"), tatoeba=False,
                                n_boot=50, progress=False)

    computed = []
    original = cache.memoized

    def spy(kind, fields, compute, **kw):
        return original(kind, fields, lambda: computed.append(kind) or compute(), **kw)

    def same(a, b):  # a fresh result holds tuples where a memoised one holds lists
        return json.loads(json.dumps(a)) == json.loads(json.dumps(b))

    first = run()  # memoises everything (or reuses what another test memoised)
    monkeypatch.setattr(cache, "memoized", spy)
    again = run()
    assert computed == [] and same(again.report["probes"], first.report["probes"])
    assert same(again.report["cka"], first.report["cka"]) and same(again.report["retrieval"], first.report["retrieval"])

    # The same function with one more statement in its body, from a real source file.
    source = inspect.getsource(driver.probe_eval).replace("from ..probes import", "from probe.probes import")
    body_start = source.index("    vocab, probe, ctrl, ctrl_probe = fitted")
    edited = source[:body_start] + "    assert fitted is not None\n" + source[body_start:]
    (tmp_path / "edited_eval.py").write_text("import numpy as np\n"
                                             "from probe.layerwise.probing import _label_ids, sentence_ids\n\n"
                                             + edited)
    monkeypatch.syspath_prepend(str(tmp_path))
    # the run function reads probe_eval from its own module (probe.layerwise.driver), key and call alike
    monkeypatch.setattr(driver, "probe_eval", importlib.import_module("edited_eval").probe_eval)
    edited_run = run()
    # 3 layers x (English, German, English control) evaluations recomputed; nothing else
    assert sorted(set(computed)) == ["probe-eval"] and len(computed) == 9
    assert same(edited_run.report["probes"], first.report["probes"])  # a no-op edit: same numbers


def _edited_copy(fn, folder: Path, module: str):
    """``fn`` with one more statement in its body, imported from a real source file (so that
    ``inspect.getsource`` sees the edit); never called."""
    import ast
    import textwrap

    source = textwrap.dedent(inspect.getsource(fn))
    body = ast.parse(source).body[0].body
    after = body[0].end_lineno if isinstance(body[0], ast.Expr) else body[0].lineno - 1  # past the docstring
    lines = source.splitlines(keepends=True)
    edited = "".join(lines[:after]) + "    assert True\n" + "".join(lines[after:])
    (folder / f"{module}.py").write_text("from __future__ import annotations\n\n" + edited)
    return getattr(importlib.import_module(module), fn.__name__)


def test_editing_a_fusion_run_function_invalidates_its_memoised_runs_and_nothing_else(tmp_path, monkeypatch):
    """Fusion runs are keyed on the code that computes them (probe.transfer.run_code), not on
    the whole package: an edit elsewhere reuses them, an edit of that code recomputes. Each
    function is replaced in the module that defines it."""
    from probe.transfer import report, runs, views

    monkeypatch.syspath_prepend(str(tmp_path))
    job = {"task": "pos", "method": "dlfa", "k": 1, "seed": 0, "params": {"lr": 0.01, "epochs": 1},
           "keys": {"train": "train-key", "dev": "dev-key", "targets": {"de": "de-key"}}}
    stored = {"dev_score": 0.5, "targets": {"de": {"score": 0.25, "counts": [[1], [4]]}}}
    assert runs.memo_lookup(job) is None
    assert memoized("fusion-run", runs._run_key(job), lambda: stored, code=runs.run_code("pos")) == stored
    assert runs.memo_lookup(job) == stored and runs.memo_run(job) == stored  # what a sweep reads
    key = runs.run_code("pos")
    assert runs.run_code("ner") != key  # the task definition is part of it

    # unrelated edits: any other file of the package (the whole-package digest) and a function
    # that only reads finished runs (which k to report)
    monkeypatch.setattr(cache, "_PACKAGE_CODE", ["the package after an unrelated edit"])
    monkeypatch.setattr(report, "select_k", _edited_copy(report.select_k, tmp_path, "edited_select"))
    assert runs.run_code("pos") == key and runs.memo_lookup(job) == stored

    # the body of a function that trains or scores a run: the memoised run is not reused
    for i, (module, name) in enumerate([(runs, "_train_and_score"), (runs, "sentence_counts"),
                                        (views, "map_labels"), (views, "CachedView")]):
        with monkeypatch.context() as m:
            m.setattr(module, name, _edited_copy(getattr(module, name), tmp_path, f"edited_run{i}"))
            assert runs.run_code("pos") != key
            assert runs.memo_lookup(job) is None
    assert runs.run_code("pos") == key and runs.memo_lookup(job) == stored  # edits undone


def test_a_function_moved_into_a_subpackage_keeps_its_code_version():
    """Relative imports are hashed as seen from a top-level module of the package, so a
    function moved unchanged from ``probe/x.py`` into ``probe/x/part.py`` (its ``from .cache``
    now ``from ..cache``) keeps its memoised results; any other edit still changes the key."""
    from probe.cache import _package_relative

    top = "def f():\n    from .cache import x\n    from . import stats\n    from .transfer.views import v\n"
    moved = "def f():\n    from ..cache import x\n    from .. import stats\n    from .views import v\n"
    assert _package_relative(moved, "probe.transfer.runs") == top
    assert _package_relative(top, "probe.fusion") == top  # a top-level module reads as it is
    assert _package_relative(moved, "elsewhere.runs") == moved  # not this package: untouched
    assert _package_relative("    from ...x import y\n", "probe.a.b") == "    from ...x import y\n"  # above it
    edited = moved.replace("import x", "import x, y")
    assert _package_relative(edited, "probe.transfer.runs") != top
