"""Honest numbers for zero-shot harnesses (issue 14, item 4): reference rates, seed-and-sentence
intervals, the "at chance" rule, the capacity-matched DLFA control, the scalar mix's learning
rate and the PAWS-X overlap filter. Tiny arrays only."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from probe.errors import ProbeError
from probe.fusion import (DLFA, ArrayView, DLFAFusion, FixedGateFusion, FusionClassifier,
                          build_combiner, count_parameters, method_layers)
from probe.stats import (at_chance, best_above_chance, bootstrap_indices, reference_rates,
                         score_from_counts, seed_sentence_bootstrap)

E = 16


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --------------------------------------------------------------------------- reference rates


def test_reference_rates_take_the_majority_from_training_and_score_it_on_the_target():
    train = np.array([0] * 70 + [1] * 20 + [2] * 10 + [-1] * 5)  # -1: unlabelled, skipped
    target = np.array([0] * 40 + [1] * 50 + [2] * 10)
    r = reference_rates(train, target, n_draws=400, seed=0)
    assert r.majority_label == 0 and r.majority == pytest.approx(0.40)
    # random guessing with the training frequencies: sum_c p_train(c) p_target(c)
    assert r.chance == pytest.approx(0.7 * 0.4 + 0.2 * 0.5 + 0.1 * 0.1, abs=0.01)
    # a custom metric: for entity-F1-like scores the all-"O" majority predictor scores 0
    f1_like = reference_rates([0, 0, 0, 1], [0, 1, 0, 1],
                              score=lambda pred: float(((pred == 1) & (np.array([0, 1, 0, 1]) == 1)).sum() > 0))
    assert f1_like.majority == 0.0
    with pytest.raises(ProbeError):
        reference_rates([-1, -1], [0, 1])


def _counts_of(correct: np.ndarray) -> np.ndarray:
    """[n_seeds, n_sent] bool correct (one item per sentence) -> [n_seeds, n_sent, 2] counts."""
    return np.stack([correct.astype(int), np.ones_like(correct, dtype=int)], -1)


def test_an_all_majority_predictor_is_reported_at_chance():
    rng = np.random.default_rng(0)
    gold = (rng.random(400) < 0.44).astype(int)  # majority class 0 at 0.56, like PAWS-X
    ref = reference_rates(np.zeros(50, int), gold)
    majority_pred = np.zeros((3, 400), int)  # three seeds that all learnt the prior only
    iv = seed_sentence_bootstrap(_counts_of(majority_pred == gold), n_boot=300)
    assert iv.estimate == pytest.approx(ref.majority)
    assert iv.lo <= ref.majority <= iv.hi and at_chance(iv.lo, ref.majority)
    good = np.where(rng.random((3, 400)) < 0.85, gold, 1 - gold)
    strong = seed_sentence_bootstrap(_counts_of(good == gold), n_boot=300)
    assert not at_chance(strong.lo, ref.majority)
    # below the majority rate is "at chance" too; without an interval only the point counts
    assert at_chance(0.40, 0.56) and at_chance(None, 0.56, 0.50) and not at_chance(None, 0.56, 0.7)
    # what a table may highlight: never a result at chance
    assert best_above_chance([0.60, 0.58, 0.70], [True, False, True]) == 1
    assert best_above_chance([0.60, 0.58], [True, True]) is None


# --------------------------------------------------------------------------- intervals


def test_seed_and_sentence_interval_widens_with_seed_disagreement():
    rng = np.random.default_rng(1)
    n = 500
    # two seeds scoring 0.46 and 0.34 on the same sentences (XNLI zh in the issue)
    correct = np.stack([rng.random(n) < 0.46, rng.random(n) < 0.34])
    counts = _counts_of(correct)
    both = seed_sentence_bootstrap(counts, n_boot=1000, seed=0)
    from probe.transfer.report import _boot_mean

    lo_s, hi_s = _boot_mean(counts, "accuracy", 1000)  # sentences only
    assert both.n_seeds == 2 and both.n_sentences == n
    assert (both.hi - both.lo) > 1.5 * (hi_s - lo_s)
    per_seed = correct.mean(1)
    assert both.lo < per_seed.min() + 0.02 and both.hi > per_seed.max() - 0.02
    # identical seeds: the seed level adds nothing
    same = seed_sentence_bootstrap(_counts_of(np.stack([correct[0], correct[0]])), n_boot=1000)
    lo1, hi1 = _boot_mean(_counts_of(correct[:1]), "accuracy", 1000)
    assert same.hi - same.lo == pytest.approx(hi1 - lo1, rel=0.15)


def test_one_seed_gives_no_gain_interval():
    rng = np.random.default_rng(2)
    a = _counts_of(rng.random((1, 200)) < 0.7)
    b = _counts_of(rng.random((3, 200)) < 0.6)
    g = seed_sentence_bootstrap(a, minus=b, n_boot=100)
    assert g.lo is None and g.hi is None and g.n_seeds == 1 and "one seed" in g.note
    assert g.estimate == pytest.approx(a[0, :, 0].mean() - b[:, :, 0].mean(1).mean())
    with pytest.raises(ProbeError):
        seed_sentence_bootstrap(a, minus=b[:, :100], n_boot=10)  # not the same sentences


def test_seed_sentence_bootstrap_matches_a_slow_reference_loop():
    rng = np.random.default_rng(3)
    n, n_boot = 40, 50
    a = np.stack([rng.integers(0, 4, (3, n)), np.full((3, n), 4)], -1)  # 4 words/sentence
    b = np.stack([rng.integers(0, 4, (2, n)), np.full((2, n), 4)], -1)
    fast = seed_sentence_bootstrap(a, minus=b, n_boot=n_boot, seed=5)
    seed_rng = np.random.default_rng([5, 1])
    pick_a = seed_rng.integers(0, 3, (n_boot, 3))  # one block: side a, then side b
    pick_b = seed_rng.integers(0, 2, (n_boot, 2))
    reps = []
    for r, idx in enumerate(bootstrap_indices(n, n_boot, 5)):
        sa = [score_from_counts(a[s, idx].sum(0), "accuracy") for s in pick_a[r]]
        sb = [score_from_counts(b[s, idx].sum(0), "accuracy") for s in pick_b[r]]
        reps.append(np.mean(sa) - np.mean(sb))
    lo, hi = np.quantile(reps, [0.025, 0.975])
    assert (fast.lo, fast.hi) == pytest.approx((lo, hi))
    full = score_from_counts(a.sum(1), "accuracy").mean() - score_from_counts(b.sum(1), "accuracy").mean()
    assert fast.estimate == pytest.approx(full)


# --------------------------------------------------------------------------- capacity control


def _batch(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    b, t = len(lengths), max(lengths)
    mask = torch.arange(t)[None, :] < torch.tensor(lengths)[:, None]
    return torch.randn(b, t, E, generator=g), torch.randn(b, t, E, generator=g), mask


def test_gate_fixed_control_equals_the_mean_and_matches_dlfa_capacity():
    x, y, mask = _batch([5, 3])
    fixed = build_combiner("dlfa-fixed", n_layers=4, hidden=E, k=1).eval()
    dlfa = build_combiner("dlfa", n_layers=4, hidden=E, k=1).eval()
    assert isinstance(fixed, FixedGateFusion) and isinstance(dlfa, DLFAFusion)
    assert fixed.layers == dlfa.layers == (3, 1) and method_layers("dlfa-fixed", 4, 1) == (3, 1)
    # same block, same parameter budget
    assert count_parameters(fixed) == count_parameters(dlfa) > 0
    feats = {3: x, 1: y}
    mean = ((x + y) / 2)[mask]
    assert torch.allclose(fixed.mean(feats, mask)[mask], mean)
    with torch.no_grad():
        for p in fixed.parameters():
            p.zero_()  # AIF map = 0.5 everywhere
    assert torch.allclose(fixed(feats, mask)[mask], mean, atol=1e-6)
    # whatever its weights, the control weighs the two layers equally (symmetric in X, Y);
    # DLFA's learned gate does not
    torch.manual_seed(0)
    fixed = build_combiner("dlfa-fixed", 4, E, k=1).eval()
    dlfa = build_combiner("dlfa", 4, E, k=1).eval()
    swapped = {3: y, 1: x}
    assert torch.allclose(fixed(feats, mask), fixed(swapped, mask), atol=1e-6)
    assert not torch.allclose(dlfa(feats, mask), dlfa(swapped, mask), atol=1e-3)
    assert (fixed(feats, mask)[~mask] == 0).all()
    assert count_parameters(DLFA(E)) == count_parameters(dlfa)


def test_trainer_reports_parameter_counts_for_every_method():
    rng = np.random.default_rng(0)
    offsets = np.arange(0, 61, 6)
    view = ArrayView(rng.standard_normal((3, 60, E)).astype(np.float32), offsets,
                     rng.integers(0, 3, 60))
    counts = {}
    for method in ("last", "layer", "concat", "scalarmix", "dlfa", "dlfa-fixed"):
        clf = FusionClassifier(method=method, k=1, epochs=1, max_train=None).fit(view)
        counts[method] = clf.n_params_
        assert clf.n_params_["total"] == clf.n_params_["combiner"] + clf.n_params_["head"]
        assert clf.n_params_["total"] == count_parameters(clf.model_)
    head = E * 3 + 3
    assert counts["last"] == counts["layer"] == {"combiner": 0, "head": head, "total": head}
    assert counts["scalarmix"]["combiner"] == 3 + 1  # a logit per layer and gamma
    assert counts["concat"]["combiner"] == 2 * E * E + E
    assert counts["dlfa-fixed"] == counts["dlfa"]


# --------------------------------------------------------------------------- scalar mix


def _pair_view(n, informative, n_layers=6, seed=0):
    """Pair task whose label is readable from layer ``informative`` only."""
    rng = np.random.default_rng(seed)
    protos = np.random.default_rng(7).standard_normal((8, E))
    la, lb = rng.integers(2, 6, n), rng.integers(2, 6, n)
    ta = rng.integers(0, 8, n)
    same = rng.random(n) < 0.5
    tb = np.where(same, ta, (ta + rng.integers(1, 8, n)) % 8)
    lens = la + lb
    offsets = np.concatenate([[0], np.cumsum(lens)])
    segment = np.concatenate([np.r_[np.zeros(a), np.ones(b)] for a, b in zip(la, lb)]).astype(np.int8)
    topic = np.concatenate([np.r_[np.full(a, x), np.full(b, z)] for a, b, x, z in zip(la, lb, ta, tb)])
    layers = rng.standard_normal((n_layers, offsets[-1], E)).astype(np.float32)
    layers[informative] += 2.0 * protos[topic]
    return ArrayView(layers, offsets, same.astype(int), segment=segment)


def test_scalar_mix_weights_train_at_the_pair_tasks_learning_rate():
    """With the pair tasks' lr 1e-3 the mix logits used to stay at ~1/n_layers (issue 14:
    0.074-0.081 on XNLI and PAWS-X); their own rate lets them find the useful layer."""
    train = _pair_view(320, informative=2)
    kw = dict(method="scalarmix", task="pair", lr=1e-3, epochs=4, batch_size=16,
              max_train=None, seed=0)
    stuck = FusionClassifier(mix_lr=None, **kw).fit(train).model_.combiner.weights()
    moved = FusionClassifier(**kw).fit(train).model_.combiner.weights()  # default mix_lr
    uniform = 1 / 6
    assert np.abs(stuck - uniform).max() < 0.2 * uniform  # 80 steps at 1e-3: hardly moves
    assert int(np.argmax(moved)) == 2 and moved[2] > 2 * uniform
    assert FusionClassifier().mix_lr == 0.05


# --------------------------------------------------------------------------- PAWS-X overlap


def _write_pawsx(root, pairs_en, pairs_de, test_de):
    folder = root / "xtreme" / "pawsx"
    folder.mkdir(parents=True)
    for name, rows in (("dev-en", pairs_en), ("dev-de", pairs_de), ("test-de", test_de)):
        (folder / f"{name}.tsv").write_text("".join(f"{a}\t{b}\t{y}\n" for a, b, y in rows))


def test_pawsx_targets_sharing_an_id_with_english_data_are_flagged(tmp_path, monkeypatch):
    from probe.data import load_corpus
    from probe.data.xtreme import source_overlap

    en = [(f"english a{i}", f"english b{i}", i % 2) for i in range(12)]
    de = [(f"deutsch a{i}", f"deutsch b{i}", i % 2) for i in range(12)]
    test = [("neu x", "neu y", 0), ("Deutsch  b3", "deutsch a3", 1),  # a dev pair, swapped
            ("deutsch a5", "deutsch b5", 1), ("anders p", "anders q", 0)]
    _write_pawsx(tmp_path, en, de, test)
    monkeypatch.setenv("PROBE_DATA_MIRROR", str(tmp_path))
    target = load_corpus("xtreme-pawsx", "de", "test")
    assert source_overlap(target).tolist() == [False, True, True, False]
    # the held-out dev share of another language: its ids are the English selection pairs
    held = load_corpus("xtreme-pawsx", "de", "dev")
    assert source_overlap(held).all()


def test_dropping_examples_recomputes_the_run_scores():
    from probe.transfer.runs import drop_examples

    run = {"dev_score": 0.5, "targets": {"de": {"score": 0.5, "counts": [[1, 0, 1, 0], [1, 1, 1, 1]]}}}
    out = drop_examples(run, {"de": np.array([True, False, True, True])}, "accuracy")
    assert out["targets"]["de"] == {"score": pytest.approx(2 / 3), "counts": [[1, 1, 0], [1, 1, 1]]}
    assert run["targets"]["de"]["score"] == 0.5  # the memoised run is not modified
    assert drop_examples(run, {"de": np.ones(4, bool)}, "accuracy") is run


# --------------------------------------------------------------------------- summary


def _report(task, means, at, reference=True):
    comp = {m: {"mean": v, "std": 0.01, "ci95": [v - 0.02, v + 0.02], "at_chance": a,
                "gain_vs_last": {"mean": v - means["last"]}} for (m, v), a in zip(means.items(), at)}
    rep = {"kind": "probe.fusion", "task": task, "langs": ["de"], "comparison": {"de": comp},
           "task_info": {"metric": "accuracy"}, "model": {"name": "m"}, "versions": {},
           "seeds": {"train": [0, 1, 2]}, "n_seeds": 3}
    if reference:
        rep["reference"] = {"de": {"majority": 0.56, "chance": 0.5}}
    return rep


def test_summary_never_highlights_a_result_at_chance(tmp_path):
    from probe.transfer import summary_figure, summary_highlight, summary_table

    paws = _report("pawsx", {"last": 0.56, "layer": 0.57, "dlfa": 0.58, "dlfa@best_k": 0.59},
                   [True, True, True, True])
    pos = _report("pos", {"last": 0.70, "layer": 0.80, "dlfa": 0.82, "dlfa@best_k": 0.85},
                  [False, False, True, False])
    old = _report("ner", {"last": 0.3, "dlfa": 0.4}, [None, None], reference=False)
    for rep in (paws, pos, old):
        (tmp_path / rep["task"]).mkdir()
        (tmp_path / rep["task"] / "fusion.json").write_text(json.dumps(rep))
    table = summary_table([tmp_path])
    assert table["reference"]["pawsx"] == {"majority": 0.56, "chance": 0.5}
    assert table["reference"]["ner"] is None and table["n_seeds"]["pos"] == 3
    # pawsx: all at chance -> nothing; pos: DLFA is at chance, the oracle never competes;
    # a file without reference rates cannot show anything is above chance
    assert summary_highlight(table) == {"pos": "layer", "ner": None, "pawsx": None}
    assert summary_figure([tmp_path], tmp_path / "summary.png")[0].stat().st_size > 0


def test_pawsx_overlap_on_the_mirror(mirror):
    from probe.data import load_corpus
    from probe.data.xtreme import source_overlap

    if not (mirror / "xtreme" / "pawsx").is_dir():
        pytest.skip("the mirror has no xtreme/pawsx folder")
    # test pairs equal to a line of the same language's dev file (whose English line trains or
    # selects), e.g. test-de line 385 = dev-de line 693 swapped, plus untranslated "NS" lines
    de = load_corpus("xtreme-pawsx", "de", "test")
    flagged = source_overlap(de)
    assert int(flagged.sum()) == 15
    assert flagged[384] and de.sentences[384].sent_id == "test-de:385"
    assert int(source_overlap(load_corpus("xtreme-pawsx", "zh", "test")).sum()) == 25
    assert source_overlap(load_corpus("xtreme-pawsx", "fr", "dev")).all()
    assert not source_overlap(load_corpus("xtreme-xnli", "de", "test@200s0")).any()
