"""The fixed choices of a :func:`~probe.transfer.fuse` sweep: the methods and their labels,
the default data budgets and learning rates, and the notes every report carries.

Kept apart from the code that uses them so that the driver, the one-run code, the report
and the CLI read one definition.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SOURCE_LANG", "METHODS", "RUN_VERSION", "PAPER", "FROZEN_NOTE", "CAPACITY_NOTE",
           "TRAINING_DATA", "Budget", "TASK_BUDGETS", "FUSION_POOLING", "TASK_LR",
           "METHOD_LABELS", "TASK_ORDER"]

SOURCE_LANG = "en"
METHODS = ("dlfa", "dlfa-fixed", "last", "layer", "concat", "scalarmix")
RUN_VERSION = 2  # bump when a run's numbers would change for the same inputs
PAPER = "arXiv 2205.08497 (DLFA with AIF; mBERT fine-tuned end to end)"
FROZEN_NOTE = ("The encoder is frozen: every method trains only its fusion block and task head "
               "on hidden states read from the cache. The paper (arXiv 2205.08497) fine-tunes "
               "mBERT end to end, so absolute scores and gains are not comparable with its "
               "tables.")
CAPACITY_NOTE = ("DLFA's gate is a small non-linear network (AIF) while the last/layer/concat "
                 "baselines feed their features to a linear head (tagging) or the same MLP head "
                 "(pairs), so DLFA's gain over them can be extra capacity rather than fusion. "
                 "dlfa-fixed is the capacity-matched control: the same AIF block and head "
                 "(same parameter count) with the layer gate fixed at 0.5; DLFA minus "
                 "dlfa-fixed is what choosing between the two layers adds.")
#: What each task actually trains on (``{n_used}`` is filled in from the run).
TRAINING_DATA = {
    "pos": "POS train: XTREME's English UD POS training set (21,253 sentences, UD v2.5 "
           "English treebanks, as XTREME); {n_used} sentences used",
    "ner": "NER train: PAN-X (WikiANN) English train (20,000 sentences, as XTREME); {n_used} "
           "sentences used",
    "xnli": "XNLI train: the mirrored 10,071-pair MultiNLI subset (TaxiNLI), not the full "
            "392,702-pair MultiNLI train set XTREME uses; {n_used} pairs used",
    "pawsx": "PAWS-X train: no PAWS-X training set is mirrored (XTREME uses its 49,401 English "
             "pairs); training is a seeded 75% of the English dev file (1,499 distinct pairs), "
             "selection the other 501; {n_used} pairs used",
}


@dataclass(frozen=True)
class Budget:
    """Seeded subsample sizes in examples (sentences or pairs); None = the whole split."""

    train: int | None
    dev: int | None
    test: int | None


#: Default budgets, for e5-small-q4 on 2 CPU cores. Extraction runs at ~250-600 words/s
#: (busy to idle machine, ~4 CPU-ms per word); a 3-epoch run on 3000 POS sentences (~53k
#: words) costs ~2 (last, layer k) to ~6 (DLFA, concat) CPU-s, scalarmix more. The default
#: POS sweep en -> de, zh extracts ~125k words; with 3000/1000/2000 it took 14.8 min on a
#: machine shared with other jobs (CPU: 250 s extraction, 290 s training), so the targets
#: and dev were cut to keep a margin. NER sentences are short (8 words); XNLI/PAWS-X pairs
#: are 30-45 words, so fewer of them.
TASK_BUDGETS: dict[str, Budget] = {
    "pos": Budget(train=3000, dev=800, test=1500),
    "ner": Budget(train=5000, dev=800, test=1500),
    "xnli": Budget(train=2000, dev=500, test=1000),
    "pawsx": Budget(train=None, dev=None, test=1000),  # all 1499 / 501 carved English pairs
}
FUSION_POOLING = {"tagging": "first", "pair": "mean"}
#: Default learning rate per task kind, chosen on English dev (see :mod:`probe.transfer`).
TASK_LR = {"tagging": 1e-2, "pair": 1e-3}
#: Row labels of the tables and figures, per method (``@best_k``: at each language's oracle k).
METHOD_LABELS = {"last": "last layer only", "layer": "layer k only", "scalarmix": "ELMo scalar mix",
                 "concat": "concat [L; k] + linear", "dlfa-fixed": "DLFA gate=0.5 (control)",
                 "dlfa": "DLFA (AIF) L + k", "concat@best_k": "concat at best k",
                 "dlfa-fixed@best_k": "control at best k", "dlfa@best_k": "DLFA at best k (oracle)"}
#: The XTREME tasks ``probe fuse`` runs, in the order of the cross-task summary.
TASK_ORDER = ("pos", "ner", "xnli", "pawsx")
