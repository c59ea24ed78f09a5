"""End-to-end fine-tuning with DLFA (probe.finetuning, probe.finetune) on the tests' tiny random encoder.

The tiny model and a tiny XTREME-layout data folder stand in for e5-small-q4 and the mirror:
these tests check the mechanics (updates, reference step, resume, control, reporting), not
any score.
"""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from probe import finetuning as ft
from probe.finetuning import encoding, evaluation, report, training
from probe.finetuning.driver import _precision_of, _run_id, _run_params, _trainable_count
from probe.errors import ProbeError

from tiny import LETTERS, tiny_bert, tiny_spec, unigram_tokenizer

UPOS = ["NOUN", "VERB", "ADJ"]


class S:
    def __init__(self, words, tags=None, label=None, n_first=None):
        self.words, self.tags, self.label, self.n_first = words, tags, label, n_first


def _sentences(n, seed, max_len=8):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        k = int(rng.integers(2, max_len))
        words = ["".join(rng.choice(list(LETTERS), size=int(rng.integers(1, 4)))) for _ in range(k)]
        out.append(S(words, tags=[UPOS[len(w) % 3] for w in words]))
    return out


def _no_dropout(model):
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    return model


PARAMS = dict(lr=1e-3, warmup=0.0, batch_size=8, grad_accum=1, max_length=24, weight_decay=0.0,
              max_grad_norm=1.0, dropout=0.0, epochs=3, precision="fp32", embeddings="full",
              r=4, norm="layer", adam_betas=[0.9, 0.999], adam_eps=1e-8, eval_batch_size=16)


def _trainer(encoded, dev=None, *, fusion=ft.FusionSpec("none"), ckpt=None, seed=0, **kw):
    torch.manual_seed(seed)
    enc = _no_dropout(tiny_bert(max_positions=24, seed=0))
    net = ft.FinetuneModel(enc, "tagging", len(UPOS), fusion, dropout=0.0)
    return training.Trainer(net, encoded, dev, kind="tagging", metric="accuracy",
                            label_names=UPOS, params={**PARAMS, **kw}, seed=seed, pad_id=1,
                            device="cpu", ckpt_path=ckpt, log=lambda m: None)


@pytest.fixture(scope="module")
def tok():
    return unigram_tokenizer()


@pytest.fixture(scope="module")
def train_enc(tok):
    return ft.encode_examples(tok, _sentences(24, 0), "tagging", UPOS, max_length=24)


def test_encoding_labels_first_content_piece(tok):
    enc = ft.encode_examples(tok, [S(["ab", "c"], tags=["NOUN", "VERB"])], "tagging", UPOS,
                             max_length=24)
    pieces = tok.convert_ids_to_tokens(enc.ids[0].tolist())
    assert [pieces[p] for p in enc.positions[0]] == ["\u2581a", "\u2581c"]
    assert enc.labels[0].tolist() == [0, 1]
    # a pair: segment ids 1 from the second sentence's first piece on
    pair = ft.encode_examples(tok, [S(["ab", "c", "d"], label="1", n_first=2)], "pair",
                              ["0", "1"], max_length=24)
    t = pair.types[0]
    assert t[0] == 0 and t[-1] == 1 and set(t.tolist()) == {0, 1}
    assert pair.labels.tolist() == [1]


def test_a_step_changes_encoder_weights(train_enc):
    tr = _trainer(train_enc, embeddings="sparse")
    before = {n: p.detach().clone() for n, p in tr.model.encoder.named_parameters()}
    rows = tr.epoch_batches(1)[0]
    tr.train_step(rows)
    after = dict(tr.model.encoder.named_parameters())
    changed = [n for n in before if not torch.equal(before[n], after[n])]
    assert any("encoder.layer.0" in n for n in changed) and any("encoder.layer.1" in n for n in changed)
    emb = "embeddings.word_embeddings.weight"
    used = torch.unique(torch.cat([torch.from_numpy(train_enc.ids[r]) for r in rows]))
    diff = (before[emb] != after[emb].detach()).any(1)
    assert diff[used].all() and diff.sum() == len(used)  # only the rows the batch used


def test_one_step_matches_a_hand_written_reference(train_enc, tok):
    tr = _trainer(train_enc)
    ref = copy.deepcopy(tr.model)
    init = copy.deepcopy(tr.model)
    rows = tr.epoch_batches(1)[0]
    loss = tr.train_step(rows)

    # reference: pad by hand, first piece of each word from the tokenizer's word_ids,
    # log-softmax loss, autograd, global-norm clipping, AdamW's update written out
    sents = [train_enc.ids[r] for r in rows]
    T = max(len(s) for s in sents)
    ids = torch.full((len(rows), T), 1, dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.long)
    for b, s in enumerate(sents):
        ids[b, :len(s)] = torch.from_numpy(s)
        mask[b, :len(s)] = 1
    picks, gold = [], []
    for b, r in enumerate(rows):
        words = [w for w in tok.convert_ids_to_tokens(train_enc.ids[r].tolist())]
        seen = set()
        wids = tok([_sentences(24, 0)[r].words], is_split_into_words=True).word_ids(0)
        for p, w in enumerate(wids):
            if w is not None and w not in seen:
                seen.add(w)
                picks.append((b, p))
        gold += train_enc.labels[r].tolist()
        assert words[0] == "<s>"
    h = ref.encoder(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)).last_hidden_state
    W, bias = ref.head.out.weight, ref.head.out.bias
    logits = torch.stack([h[b, p] for b, p in picks]) @ W.T + bias
    ref_loss = -(torch.log_softmax(logits, -1)[torch.arange(len(gold)), torch.tensor(gold)]).mean()
    assert abs(float(ref_loss.detach()) - loss) < 1e-6
    params = [p for p in ref.parameters()]
    grads = torch.autograd.grad(ref_loss, params, allow_unused=True)
    norm = torch.sqrt(sum((g ** 2).sum() for g in grads if g is not None))
    coef = min(1.0, 1.0 / (float(norm) + 1e-6))
    lr, b1, b2, eps = PARAMS["lr"], 0.9, 0.999, 1e-8
    with torch.no_grad():
        for p, g in zip(params, grads):
            if g is None:
                continue
            g = g * coef
            m, v = (1 - b1) * g, (1 - b2) * g * g
            p -= lr * (m / (1 - b1)) / (torch.sqrt(v / (1 - b2)) + eps)
    got = dict(tr.model.named_parameters())
    worst = max(float((got[n] - p).detach().abs().max()) for n, p in ref.named_parameters())
    assert worst < 1e-6
    moved = max(float((got[n] - p).detach().abs().max()) for n, p in init.named_parameters())
    assert moved > 1e-4  # the step did move the weights (lr 1e-3)


def test_sparse_rows_first_step_equals_dense_adamw(train_enc):
    dense, sparse = _trainer(train_enc), _trainer(train_enc, embeddings="sparse")
    rows = dense.epoch_batches(1)[0]
    dense.train_step(rows)
    sparse.train_step(rows)
    a, b = dict(dense.model.named_parameters()), dict(sparse.model.named_parameters())
    assert max(float((a[n] - b[n]).detach().abs().max()) for n in a) < 1e-6


def test_resume_after_an_interrupted_epoch_gives_the_same_weights(train_enc, tok, tmp_path, monkeypatch):
    dev = ft.encode_examples(tok, _sentences(10, 5), "tagging", UPOS, max_length=24)
    whole = _trainer(train_enc, dev, embeddings="sparse", ckpt=tmp_path / "a.ckpt")
    whole.fit()
    ref = {n: p.detach().clone() for n, p in whole.model.named_parameters()}

    ckpt = tmp_path / "b.ckpt"
    first = _trainer(train_enc, dev, embeddings="sparse", ckpt=ckpt)
    calls = {"n": 0}
    step = training.Trainer.train_step

    def dying(self, rows):
        calls["n"] += 1
        if calls["n"] == 5:  # epoch 1 has 3 steps: die in the middle of epoch 2
            raise KeyboardInterrupt
        return step(self, rows)

    monkeypatch.setattr(training.Trainer, "train_step", dying)
    with pytest.raises(KeyboardInterrupt):
        first.fit()
    monkeypatch.setattr(training.Trainer, "train_step", step)
    assert torch.load(ckpt, weights_only=False)["epoch"] == 1
    again = _trainer(train_enc, dev, embeddings="sparse", ckpt=ckpt)
    again.fit()
    got = dict(again.model.named_parameters())
    assert max(float((got[n] - ref[n]).detach().abs().max()) for n in ref) == 0.0
    assert [h["epoch"] for h in json.loads(json.dumps(torch.load(ckpt, weights_only=False)["history"]))] == [1, 2, 3]


def test_gate_fixed_control_is_the_mean_of_the_two_layers(train_enc):
    torch.manual_seed(0)
    enc = _no_dropout(tiny_bert(max_positions=24, layers=2, seed=0))
    net = ft.FinetuneModel(enc, "tagging", 3, ft.FusionSpec("dlfa-fixed", 1), dropout=0.0).eval()
    ids, mask, types, _ = encoding.collate(train_enc, np.arange(6), 1, "cpu")
    with torch.no_grad():
        z = net.features(ids, mask, types)
        hs = enc(input_ids=ids, attention_mask=mask, token_type_ids=types,
                 output_hidden_states=True).hidden_states
    real = mask.bool()
    assert torch.allclose(z[real], ((hs[2] + hs[1]) / 2)[real], atol=1e-6)
    assert (z[~real] == 0).all()
    assert sum(p.numel() for p in net.fusion.parameters()) == 0
    dl = ft.FinetuneModel(enc, "tagging", 3, ft.FusionSpec("dlfa", 1))
    assert _trainable_count(dl, "full")["fusion"] > 0


def _tag_encoded(labels):
    return ft.Encoded("tagging", [np.zeros(len(x) + 2, dtype=np.int64) for x in labels],
                      [None] * len(labels), [np.arange(1, len(x) + 1) for x in labels], labels)


def test_all_majority_predictor_is_reported_at_chance():
    from probe.stats import at_chance

    rng = np.random.default_rng(0)
    labels = [rng.choice([0, 0, 0, 1, 2], size=int(rng.integers(3, 9))) for _ in range(200)]
    enc = _tag_encoded(labels)
    train = _tag_encoded([rng.choice([0, 0, 1, 2], size=6) for _ in range(50)])
    rates = evaluation.target_reference(train, enc, np.ones(len(enc), bool), "accuracy", UPOS)
    assert rates["majority_label"] == "NOUN"
    counts = np.stack([ft.example_counts(enc, [np.zeros(len(x), dtype=int) for x in labels],
                                         "accuracy", UPOS)] * 3)
    mean = ft.score_from_counts(counts[0].sum(0), "accuracy")
    assert abs(mean - rates["majority"]) < 1e-12
    iv = report._interval(counts, "accuracy", 300)
    assert iv["n_seeds"] == 3 and at_chance(iv["ci95"][0], rates["majority"], mean)
    perfect = np.stack([ft.example_counts(enc, labels, "accuracy", UPOS)] * 3)
    assert not at_chance(report._interval(perfect, "accuracy", 300)["ci95"][0], rates["majority"],
                         1.0)


def test_reference_rates_are_the_shared_definition_checked_by_brute_force():
    """majority = English training's most frequent label predicted everywhere; chance = random
    labels with the training frequencies (probe fuse's definitions), against a hand count and
    the exact expectation (accuracy) or a separate Monte Carlo (entity F1)."""
    from collections import Counter

    from seqeval.metrics import f1_score

    rng = np.random.default_rng(3)
    # training prior 0.6 / 0.3 / 0.1 on VERB / ADJ / NOUN, the target mostly NOUN: 1/C = 1/3
    # would be far from the expectation sum_c p_train(c) p_target(c)
    train = _tag_encoded([rng.choice([1] * 6 + [2] * 3 + [0], size=10) for _ in range(40)])
    target = [rng.choice([0] * 7 + [1, 2, 2], size=int(rng.integers(4, 12))) for _ in range(120)]
    keep = np.ones(len(target), bool)
    keep[:20] = False  # dropped examples take no part
    rates = evaluation.target_reference(train, _tag_encoded(target), keep, "accuracy", UPOS)
    tr = Counter(np.concatenate(train.labels).tolist())
    gold = np.concatenate(target[20:])
    top = max(sorted(tr), key=lambda c: tr[c])
    assert rates["majority_label"] == UPOS[top] == "VERB"
    assert rates["majority"] == pytest.approx(float(np.mean(gold == top)), abs=1e-12)
    p_train = np.array([tr[c] / sum(tr.values()) for c in range(3)])
    expect = float(np.mean(p_train[gold]))
    se = float(np.sqrt(np.sum(p_train[gold] * (1 - p_train[gold]))) / len(gold)
               / np.sqrt(rates["n_chance_draws"]))
    assert abs(rates["chance"] - expect) < 5 * se and abs(expect - 1 / 3) > 10 * se

    names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    pick = [0] * 6 + [1, 2, 3, 4]
    ner_train = _tag_encoded([rng.choice(pick, size=8) for _ in range(40)])
    ner_target = [rng.choice(pick, size=int(rng.integers(4, 10))) for _ in range(60)]
    rates = evaluation.target_reference(ner_train, _tag_encoded(ner_target), np.ones(60, bool),
                                        "f1", names)
    assert rates["majority_label"] == "O" and rates["majority"] == 0.0  # all "O": no entity
    tr = Counter(np.concatenate(ner_train.labels).tolist())
    prior = np.array([tr[c] for c in range(len(names))], float)
    prior /= prior.sum()
    brute_rng = np.random.default_rng(12345)
    gold = [[names[i] for i in t] for t in ner_target]
    draws = [f1_score(gold, [[names[i] for i in brute_rng.choice(len(names), size=len(t), p=prior)]
                             for t in ner_target]) for _ in range(300)]
    se = float(np.std(draws)) / np.sqrt(rates["n_chance_draws"])
    assert abs(rates["chance"] - float(np.mean(draws))) < 5 * se + 1e-9


def test_report_intervals_and_gains_come_from_probe_stats(tmp_path, monkeypatch):
    """One statistics path: the report's score interval and gains are probe.stats' seed and
    sentence bootstrap of the recorded counts (each system's seeds resampled independently)."""
    from probe.stats import seed_sentence_bootstrap

    monkeypatch.setenv("PROBE_DATA_MIRROR", str(tmp_path / "mirror"))
    _write_xtreme(tmp_path / "mirror")
    res = ft.finetune("pos", "zh", model=tiny_spec(max_positions=40),
                      fusion="none,dlfa:1,dlfa-matched:1", seeds=2, epochs=1, batch_size=8,
                      max_length=32, lr=1e-3, n_boot=150, out=tmp_path / "out", progress=False)
    r = res.report
    recs = {}
    for f in (tmp_path / "out" / "runs").glob("*.json"):
        rec = json.loads(f.read_text())
        recs.setdefault(rec["fusion"], {})[rec["seed"]] = rec

    def counts(name):
        return np.stack([np.asarray(recs[name][s]["targets"]["zh"]["counts"]).T for s in (0, 1)])

    row = r["results"]["zh"]["dlfa:1"]
    iv = seed_sentence_bootstrap(counts("dlfa:1"), "accuracy", n_boot=150, seed=0)
    assert row["ci95"] == [iv.lo, iv.hi] and row["n_seeds"] == 2
    for key, other in (("gain_vs_none", "none"), ("gain_vs_control", "dlfa-matched:1")):
        g = row[key] if key == "gain_vs_none" else row[key][other]
        want = seed_sentence_bootstrap(counts("dlfa:1"), "accuracy", minus=counts(other),
                                       n_boot=150, seed=0)
        assert g["ci95"] == [want.lo, want.hi] and g["vs"] == other
        assert g["mean"] == pytest.approx(row["mean"] - r["results"]["zh"][other]["mean"], abs=1e-12)
    assert "gain_vs_control" not in r["results"]["zh"]["none"]
    text = res.format_table()
    assert "dlfa:1 - dlfa-matched:1: zh" in text
    assert res.table().loc["dlfa:1", "zh gain vs dlfa-matched"] == row["gain_vs_control"]["dlfa-matched:1"]["mean"]
    fig = res.plot_gains()
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert ticks == ["dlfa:1\nzh", "dlfa-matched:1\nzh", "dlfa:1\n-dlfa-matched:1\nzh",
                     "paper\n(mBERT)"]
    # one seed: the gain over the control has no interval, and the table says so
    one = ft.finetune("pos", "zh", model=tiny_spec(max_positions=40),
                      fusion="dlfa:1,dlfa-matched:1", seeds=1, epochs=1, batch_size=8,
                      max_length=32, lr=1e-3, n_boot=50, out=tmp_path / "out", progress=False)
    g = one.report["results"]["zh"]["dlfa:1"]["gain_vs_control"]["dlfa-matched:1"]
    assert g["ci95"] is None and "one seed" in g["note"]
    assert "dlfa:1 - dlfa-matched:1: zh" in one.format_table() and "(1 seed)" in one.format_table()


def test_run_id_of_the_default_configuration_is_pinned():
    """Run records of a running sweep are found by this id: the default recipe's params and the
    key layout must not drift (the value was computed from the key as first released)."""
    import inspect

    sig = inspect.signature(ft.finetune).parameters
    fields = [n for n in inspect.signature(_run_params).parameters if n != "precision"]
    params = _run_params(precision=_precision_of(sig["dtype"].default, sig["precision"].default),
                            **{n: sig[n].default for n in fields})
    data = {"train": "1" * 64, "dev": "2" * 64, "target:de": "3" * 64, "target:zh": "4" * 64}
    assert _run_id("pos", "dlfa:6", 0, "0" * 64, data, params) == "dlfa6-s0-6518699a4124ef51"
    assert params["precision"] == "fp32" and ft.RUN_VERSION == 1


def test_dtype_is_the_documented_name_and_precision_a_deprecated_alias():
    import argparse

    assert [_precision_of(d, None) for d in (None, "float32", "bfloat16", "float16")] == \
        ["fp32", "fp32", "bf16", "fp16"]
    with pytest.warns(DeprecationWarning):
        assert _precision_of(None, "bf16") == "bf16"
    with pytest.raises(ProbeError):
        _precision_of("bf16", None)
    with pytest.raises(ProbeError), pytest.warns(DeprecationWarning):
        _precision_of("float32", "fp16")
    from probe.finetuning.cli import run as cli_run

    # the package's run is the command-line function probe.cli calls (no submodule of that name)
    assert ft.run is cli_run and callable(ft.run)
    parser = argparse.ArgumentParser()
    ft.add_parser(parser.add_subparsers())
    a = parser.parse_args(["finetune", "--task", "pos", "--lang", "de", "--dtype", "bfloat16"])
    assert a.dtype == "bfloat16" and a.precision is None
    assert parser.parse_args(["finetune", "--task", "pos", "--lang", "de",
                              "--precision", "fp16"]).precision == "fp16"


def test_parse_fusion():
    assert [s.name for s in ft.parse_fusion("none,dlfa:all", 3)] == ["none", "dlfa:0", "dlfa:1", "dlfa:2"]
    assert ft.parse_fusion("dlfa-fixed:2", 12) == [ft.FusionSpec("dlfa-fixed", 2)]
    for bad in ("dlfa", "dlfa:12", "mix:3", "none:1", "dlfa:x"):
        with pytest.raises(ProbeError):
            ft.parse_fusion(bad, 12)


def _write_xtreme(root):
    folder = root / "xtreme" / "udpos"
    folder.mkdir(parents=True)
    for name, n, seed in (("train-en", 40, 0), ("dev-en", 12, 1), ("dev-de", 12, 2), ("test-zh", 12, 3)):
        lines = []
        for s in _sentences(n, seed):
            lines += [f"{w}\t{t}" for w, t in zip(s.words, s.tags)] + [""]
        (folder / f"{name}.tsv").write_text("\n".join(lines) + "\n")


def test_targets_are_parsed_as_probe_fuse_parses_them(tmp_path, monkeypatch):
    """finetune and fuse share probe.options.parse_targets: order kept, repeats dropped, a
    language the task's corpus lacks refused before any model is loaded."""
    from probe.options import parse_targets

    monkeypatch.setenv("PROBE_DATA_MIRROR", str(tmp_path / "mirror"))
    _write_xtreme(tmp_path / "mirror")
    assert parse_targets("zh,de,zh", "pos") == ["zh", "de"] and parse_targets(["de"], "pos") == ["de"]
    with pytest.raises(ProbeError, match="has no French"):
        ft.finetune("pos", "de,fr", model="/nonexistent/model", progress=False)


def test_finetune_end_to_end_on_a_tiny_model(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PROBE_DATA_MIRROR", str(tmp_path / "mirror"))
    _write_xtreme(tmp_path / "mirror")
    spec = tiny_spec(max_positions=40)
    res = ft.finetune("pos", "de,zh", model=spec, fusion="none,dlfa:1,dlfa-fixed:1", seeds=2,
                      epochs=2, batch_size=8, max_length=32, lr=1e-3, n_boot=200,
                      out=tmp_path / "out", save_model=tmp_path / "models", progress=False)
    assert "Writing model shards" not in capsys.readouterr().err  # progress=False: no bar at all
    r = res.report
    assert r["fine_tuned"] and r["n_seeds"] == 2 and r["target_split"] == {"de": "dev", "zh": "test"}
    row = r["results"]["de"]["dlfa:1"]
    assert row["gain_vs_none"]["ci95"] is not None and len(row["per_seed"]) == 2
    assert r["parameters"]["dlfa:1"]["fusion"] > 0 and r["parameters"]["dlfa-fixed:1"]["fusion"] == 0
    assert set(r["reference_rates"]["de"]) >= {"majority", "chance", "majority_label"}
    assert r["dtype"] == "float32" and r["params"]["precision"] == "fp32"
    ctl = r["results"]["de"]["dlfa:1"]["gain_vs_control"]["dlfa-fixed:1"]
    assert ctl["ci95"] is not None and ctl["vs"] == "dlfa-fixed:1"
    assert r["paper"]["gain_points"] == 1.5 and "train" in r["data"]
    paths = res.save(tmp_path / "out")
    assert (tmp_path / "out" / "gains.png").is_file()
    back = ft.FinetuneResult.load(tmp_path / "out")
    assert back.report["results"] == json.loads(json.dumps(r["results"]))
    assert "FinetuneResult(task='pos'" in repr(back) and "majority" in back.format_table()
    assert ft.FinetuneResult.load(paths).report == back.report  # save() returns the folder
    table = back.table()
    assert list(table.index) == ["majority class", "chance", "none", "dlfa:1", "dlfa-fixed:1"]
    assert table.loc["none", "de"] == r["results"]["de"]["none"]["mean"]
    assert "<table" in back._repr_html_()
    assert ft.summary_figure([tmp_path / "out"], tmp_path / "summary.png")[0].is_file()
    # plot(path=None, *, ax=None), like the other results: saved only when given a path,
    # drawn into the caller's Axes (without the toolkit's title) when given one
    import matplotlib.pyplot as plt

    fig = back.plot(tmp_path / "figs" / "scores.png")
    assert fig._suptitle is not None
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == ["scores.pdf", "scores.png"]
    plt.close(fig)
    own, axes = plt.subplots(1, 2)
    assert back.plot(ax=axes[0]) is own and back.plot_gains(ax=axes[1]) is own
    assert axes[0].patches and axes[1].patches and own._suptitle is None
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == ["scores.pdf", "scores.png"]
    plt.close(own)
    # a finished run is read back, not retrained
    runs = sorted((tmp_path / "out" / "runs").glob("*.json"))
    assert len(runs) == 6 and not list((tmp_path / "out" / "runs").glob("*.ckpt"))
    # the saved encoder is a Hugging Face directory the other commands resolve and load
    from probe.encoders import resolve_encoder

    saved = tmp_path / "models" / "dlfa1-seed0"
    enc = resolve_encoder(str(saved)).load()
    assert enc.n_layers == 2 and (saved / "probe_finetune.json").is_file()
    assert paths


def test_cli_errors_are_one_line(tmp_path, monkeypatch, capsys):
    from probe.cli import main

    monkeypatch.setenv("PROBE_DATA_MIRROR", str(tmp_path / "mirror"))
    _write_xtreme(tmp_path / "mirror")
    code = main(["finetune", "--task", "pos", "--lang", "de", "--model", str(tmp_path / "nope"),
                 "--fusion", "dlfa:1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("probe: error:")


def test_bench_finetune_quick(capsys, tmp_path, monkeypatch):
    import importlib.util
    from pathlib import Path

    bench = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_finetune.py"
    spec = importlib.util.spec_from_file_location("bench_finetune_under_test", bench)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--quick", "--home", str(tmp_path / "home")]) == 0
    out = capsys.readouterr().out
    assert "RATIO train step (sparse rows) time / bare fwd+bwd time:" in out
    assert "not yet measured on a GPU" in out


def test_pair_task_end_to_end_with_segment_ids(tmp_path, monkeypatch):
    monkeypatch.setenv("PROBE_DATA_MIRROR", str(tmp_path / "mirror"))
    folder = tmp_path / "mirror" / "xtreme" / "xnli"
    folder.mkdir(parents=True)
    labels = ["entailment", "neutral", "contradiction"]
    rng = np.random.default_rng(0)
    # training labels 2:1:0-heavy, target mostly contradiction: chance is not 1/3
    freq = {"train-en": [0, 0, 0, 1, 1, 2], "dev-en": [0, 1, 2], "test-de": [2, 2, 2, 0]}
    for name, n in (("train-en", 30), ("dev-en", 9), ("test-de", 80)):
        rows = []
        for i in range(n):
            a = " ".join(rng.choice(list(LETTERS), size=3))
            b = " ".join(rng.choice(list(LETTERS), size=2))
            rows.append(f"{a}\t{b}\t{labels[freq[name][i % len(freq[name])]]}")
        (folder / f"{name}.tsv").write_text("\n".join(rows) + "\n")
    res = ft.finetune("xnli", "de", model=tiny_spec(max_positions=40), fusion="none,dlfa:0",
                      seeds=1, epochs=1, batch_size=8, max_length=32, n_boot=100,
                      out=tmp_path / "out", progress=False)
    r = res.report
    assert r["model"]["segment_ids"] and "10k MultiNLI" in r["task_info"]["training_data"]
    assert r["results"]["de"]["dlfa:0"]["gain_vs_none"]["ci95"] is None  # one seed
    rates = r["reference_rates"]["de"]
    # by hand: training majority "entailment" (15 of 30) scored on the target (20 of 80)
    assert rates["majority_label"] == "entailment" and rates["majority"] == pytest.approx(20 / 80)
    # chance: a mean of random draws, expectation sum_c p_train(c) p_target(c) = 1/2*1/4 +
    # 1/6*3/4; 0.05 is 5 standard errors of 20 draws on 80 pairs (1/C = 1/3 lies outside)
    assert abs(rates["chance"] - (1 / 8 + 1 / 8)) < 0.05 and rates["n_chance_draws"] == 20
    from probe.stats import at_chance

    row = r["results"]["de"]["none"]
    assert row["at_chance"] == at_chance(row["ci95"][0], rates["majority"], row["mean"])
    assert row["ci95_covers"] == "target sentences only (one seed)"
    assert "(1 seed)" in res.format_table()


def test_capacity_matched_control_has_dlfas_parameters_and_weighs_both_layers_equally(train_enc):
    torch.manual_seed(0)
    enc = _no_dropout(tiny_bert(max_positions=24, layers=2, seed=0))
    matched = ft.FinetuneModel(enc, "tagging", 3, ft.FusionSpec("dlfa-matched", 1), dropout=0.0).eval()
    dlfa = ft.FinetuneModel(enc, "tagging", 3, ft.FusionSpec("dlfa", 1), dropout=0.0).eval()
    n = [sum(p.numel() for p in m.fusion.parameters()) for m in (matched, dlfa)]
    assert n[0] == n[1] > 0
    ids, mask, types, _ = encoding.collate(train_enc, np.arange(6), 1, "cpu")
    with torch.no_grad():
        z = matched.features(ids, mask, types)
        hs = enc(input_ids=ids, attention_mask=mask, token_type_ids=types,
                 output_hidden_states=True).hidden_states
        # the layers enter only through their sum: swapping them changes nothing
        swapped = matched.fusion([hs[0], hs[2], hs[1]], mask.bool())
    real = mask.bool()
    assert torch.allclose(z[real], swapped[real], atol=1e-6)
    assert (z[~real] == 0).all()
    assert ft.parse_fusion("dlfa-matched:1", 2) == [ft.FusionSpec("dlfa-matched", 1)]


def test_pawsx_targets_that_are_english_training_pairs_are_dropped_and_counted(tmp_path, monkeypatch):
    """As in probe fuse: target pairs whose PAWS-X id (or text) is an English training or
    selection pair are left out of every score and counted; the run records keep them."""
    monkeypatch.setenv("PROBE_DATA_MIRROR", str(tmp_path / "mirror"))
    folder = tmp_path / "mirror" / "xtreme" / "pawsx"
    folder.mkdir(parents=True)

    def words(i, n):  # distinct tokenizable texts: i's decimal digits as letters
        code = "".join(LETTERS[int(d)] for d in f"{i:03d}")
        return " ".join(code + LETTERS[j] for j in range(n))

    en = [(words(i, 3), words(i + 50, 2), i % 2) for i in range(24)]
    de = [(words(i + 100, 3), words(i + 150, 2), i % 2) for i in range(24)]
    test = [(words(200 + i, 3), words(250 + i, 2), i % 2) for i in range(8)]
    test[2] = (de[4][1], de[4][0], 1)  # a dev pair, swapped: a translation of an English id
    test[5] = de[9]
    for name, rows in (("dev-en", en), ("dev-de", de), ("test-de", test), ("dev-fr", de)):
        (folder / f"{name}.tsv").write_text("".join(f"{a}\t{b}\t{y}\n" for a, b, y in rows))
    res = ft.finetune("pawsx", "de", model=tiny_spec(max_positions=40), fusion="none", seeds=2,
                      epochs=1, batch_size=8, max_length=32, n_boot=50, out=tmp_path / "out",
                      progress=False)
    r = res.report
    assert r["leakage"]["de"] == {**r["leakage"]["de"], "n_dropped": 2, "n_evaluated": 6,
                                  "n_loaded": 8}
    assert "de 2 of 8 (6 scored)" in res.format_table()
    keep = np.ones(8, bool)
    keep[[2, 5]] = False
    for f in (tmp_path / "out" / "runs").glob("*.json"):
        rec = json.loads(f.read_text())
        c = np.asarray(rec["targets"]["de"]["counts"]).T
        assert len(c) == 8  # the record keeps every pair: its key does not depend on the rule
        got = r["results"]["de"]["none"]["per_seed"][rec["seed"]]
        assert got == pytest.approx(c[keep, 0].sum() / c[keep, 1].sum())
    labels = np.array([y for _a, _b, y in test])[keep]
    assert r["reference_rates"]["de"]["majority"] == pytest.approx(
        float(np.mean(labels == int(r["reference_rates"]["de"]["majority_label"]))))
    # a target whose every pair is an English training/selection pair: nothing to score
    with pytest.raises(ProbeError, match="nothing is left"):
        ft.finetune("pawsx", "fr", model=tiny_spec(max_positions=40), fusion="none",
                    out=tmp_path / "out", progress=False)
