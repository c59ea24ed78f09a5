"""probe.finetuning, the paper's own experiment: DLFA inside an end-to-end fine-tuned encoder.

:func:`finetune` is the API behind ``probe finetune``. For one XTREME task it fine-tunes the
*whole* encoder plus a task head on English, keeps the epoch with the best English-dev score,
and evaluates that model zero-shot on each target language, for every fusion setting and
seed asked for:

* ``none``: standard fine-tuning (the paper's baseline): the head reads the last layer L;
* ``dlfa:K``: the AIF/DLFA block of :mod:`probe.fusion` (reused as is) fuses layer K with the
  last layer, ``Z = M * X_L + (1 - M) * X_K``, and the head reads ``Z``; encoder, block and
  head are trained jointly. ``dlfa:all`` runs every K = 0..L-1 and picks K on English dev;
* ``dlfa-matched:K``: the capacity-matched control, :class:`probe.fusion.FixedGateFusion`
  (DLFA's AIF block and parameter count, the two layers always weighted 0.5 each);
* ``dlfa-fixed:K``: the control with the gate fixed at 0.5 (``Z = (X_L + X_K) / 2``): same
  head, same layers, no attention block, so "DLFA beats standard fine-tuning" can be told
  apart from "mixing in layer K at all helps".

The parts, each one concept (read them in this order):

* ``driver.py``: :func:`finetune`, the run function (argument checks, data, the loop over fusion
  settings and seeds, run ids and records) and the recipe defaults (:data:`RECIPE`,
  :data:`TASK_BUDGETS`);
* ``model.py``: fusion settings (:class:`FusionSpec`, :func:`parse_fusion`) and
  :func:`FinetuneModel`, encoder + fusion block + head;
* ``encoding.py``: sentences as token ids and labels (:class:`Encoded`), padded batches;
* ``training.py``: :class:`~probe.finetuning.training.Trainer`, one (fusion, seed) run with
  checkpoints and resume; ``optim.py``: :class:`RowAdamW`, clipping, the schedule;
* ``evaluation.py``: predictions, per-example counts, majority/chance rates;
* ``report.py``: ``finetune.json`` built from the run records (intervals, gains, controls);
* ``result.py``: :class:`FinetuneResult` (table, text, save/load); ``plots.py``: its figures
  and :func:`summary_figure`;
* ``cli.py``: ``probe finetune`` (:func:`add_parser`, :func:`run`).

``probe.finetuning.run`` is the command-line :func:`run` of ``cli.py`` (what ``probe/cli.py``
registers); the run function's module is ``driver.py``, so no submodule shadows that name.

Recipe (XTREME's defaults; every one an argument and recorded in ``finetune.json``): AdamW,
learning rate 2e-5, linear schedule with warm-up (10% of the steps), batch 32, max length
128, gradient clipping at 1.0, weight decay 0. Word-level tasks label the first subword of
each word (the first *content* piece: a bare SentencePiece ``▁`` piece is skipped); words cut
off by the max length count as wrong in evaluation (their number is reported). Sentence
pairs are encoded together; models whose config has ``type_vocab_size >= 2`` get segment ids
(0 for the first sentence, 1 from the first piece of the second). Pair heads read the first
token (``<s>``/``[CLS]``) of the (fused) sequence.

Speed on CPU: the ~96M-parameter word-embedding matrix of multilingual models dominates an
AdamW step when every row is updated. ``embeddings="sparse"`` (default) computes a sparse
gradient and updates only the rows a batch used (AdamW moments kept per row, bias
correction from the global step: "lazy" AdamW; with weight decay 0 its first step equals
dense AdamW's exactly); ``"freeze"`` keeps the matrix fixed; ``"full"`` is dense AdamW. On a
GPU, ``dtype="bfloat16"``/``"float16"`` (the toolkit's ``--dtype`` vocabulary; the older
``precision="bf16"|"fp16"`` still works, deprecated) runs forward and backward under autocast
(float16 with a gradient scaler) and ``grad_accum`` splits each batch into micro-batches (the
loss is normalised over the whole batch, so the update equals the unsplit one up to rounding).

Resume: after every epoch a checkpoint (weights that can change, optimiser, schedule, dev
history, best epoch's weights) is written atomically under ``<out>/runs``; a run started again
continues after the last finished epoch, and a finished run is read back, not retrained. Each
epoch's data order and dropout are seeded by ``(seed, epoch)``, so a resumed run ends with the
same weights as an uninterrupted one.

Numbers: the definitions of ``probe fuse``, from :mod:`probe.stats`, so both harnesses mean the
same thing by every number. Per target: the seed-mean score and a 95% interval over seeds *and*
target sentences (:func:`probe.stats.seed_sentence_bootstrap`; with one seed, target sentences
only); the gain over ``none`` and, for ``dlfa:K``, over its control at the same K
(``dlfa-matched:K`` / ``dlfa-fixed:K``: does fusion help, or only the extra capacity?), each
with a seed-and-sentence interval (the sentences resampled paired, each system's seeds
independently; one seed: no gain interval); the majority-class rate (English training's most
frequent label predicted everywhere, scored with the task metric) and the chance rate (random
labels drawn with the English training frequencies), :func:`probe.stats.reference_rates`. A
method whose interval reaches down to the majority rate is marked "at chance"
(:func:`probe.stats.at_chance`). PAWS-X target pairs that are English training or selection
pairs are dropped before scoring and counted (``leakage``,
:func:`probe.data.xtreme.source_overlap`); run records keep every target example, so the drop
happens when the report is built. Layer indices: 0 = embedding output, L = last layer.

>>> res = finetune("pos", "de,zh", model="e5-small-q4", fusion="none", seeds=1,
...                max_examples=2000, epochs=2)                 # doctest: +SKIP
>>> print(res.format_table()); res.save("out/finetune/pos")     # doctest: +SKIP
"""
from __future__ import annotations

from .encoding import IGNORE, Encoded, encode_examples
from .evaluation import example_counts, predict, score_from_counts
from .model import FinetuneModel, FusionSpec, fixed_gate_module, parse_fusion
from .optim import RowAdamW
from .plots import summary_figure
from .report import PAPER, PAPER_GAINS
from .result import FinetuneResult
from .driver import RECIPE, RUN_VERSION, finetune

from .cli import add_parser, run  # noqa: E402,I001

__all__ = [
    "finetune",
    "FinetuneResult",
    "FusionSpec",
    "parse_fusion",
    "FinetuneModel",
    "fixed_gate_module",
    "RowAdamW",
    "encode_examples",
    "Encoded",
    "predict",
    "example_counts",
    "score_from_counts",
    "IGNORE",
    "PAPER",
    "PAPER_GAINS",
    "RECIPE",
    "RUN_VERSION",
    "summary_figure",
    "add_parser",
    "run",
]
