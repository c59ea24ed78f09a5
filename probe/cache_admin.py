"""``probe cache ls|verify|rm``: everything under ``$PROBE_HOME/cache``, healthy or not.

Besides finished entries, a cache can hold states that no command should get stuck on:

- a *broken* entry: a directory without a readable ``meta.json`` (an interrupted or
  damaged entry) - never trusted, rebuilt in place by the next extraction;
- a *corrupt* entry: a file missing, of the wrong size, or whose sha256 differs from the
  one in ``meta.json``;
- an *orphaned temporary*: ``<entry>.tmp-<pid>`` / ``.tmp-rm-<pid>`` left by a process
  killed during a publish or a delete;
- a *stale lock*: ``<entry>.lock`` that no live process holds;
- a *partial* build (``<entry>.partial``): resumable, not damage.

:func:`scan` names each; ``verify`` lists them (exit 1 if any needs repair) and
``rm --broken`` (or ``rm KEY``) removes them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from .cache import CacheEntry, slug, discard_dir, human_bytes, orphans, tmp_owner
from .errors import CacheError, ProbeError
from .locks import break_stale_lock, stale_locks
from .paths import cache_dir

NOT_ENTRY_DIRS = {"results"}


@dataclass
class Item:
    path: Path
    kind: str  # entry | broken | corrupt | partial | orphan | stale-lock
    model: str
    corpus: str | None = None
    lang: str | None = None
    split: str | None = None
    pooling: str | None = None
    entry: CacheEntry | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def needs_repair(self) -> bool:
        return self.kind in ("broken", "corrupt", "orphan", "stale-lock")


def _name_fields(name: str) -> dict:
    """``corpus.lang.split.pooling[.input].digest16`` (see :attr:`CacheKey.path`), best effort."""
    from .extraction import POOLINGS

    for suffix in (".partial",):
        name = name.removesuffix(suffix)
    parts = name.split(".")
    if len(parts) < 5:
        return {}
    end = -3 if parts[-2] not in POOLINGS and parts[-3] in POOLINGS and len(parts) >= 6 else -2
    return {"corpus": parts[0], "lang": parts[1], "split": ".".join(parts[2:end]), "pooling": parts[end]}


def scan(root: Path | None = None, *, checksums: bool = False) -> Iterator[Item]:
    """Every item of the cache, model by model, in name order."""
    root = Path(root) if root else cache_dir()
    if not root.is_dir():
        return
    for folder in sorted(root.glob("results/*/")) + sorted(root.glob("*/*.partial/")):
        for p in orphans(folder):
            yield Item(p, "orphan", folder.parent.name, problems=[f"temporary of process {tmp_owner(p.name)}, "
                                                                   f"which is gone"])
    for model_dir in sorted(p for p in root.iterdir() if p.is_dir() and p.name not in NOT_ENTRY_DIRS):
        orphan_set = set(orphans(model_dir))
        for p in sorted(orphan_set):
            yield Item(p, "orphan", model_dir.name, **_name_fields(p.name.split(".tmp-")[0]),
                       problems=[f"temporary of process {tmp_owner(p.name)}, which is gone"])
        for p in stale_locks(model_dir):
            yield Item(p, "stale-lock", model_dir.name, **_name_fields(p.name.removesuffix(".lock")),
                       problems=["lock file that no live process holds"])
        for p in sorted(model_dir.iterdir()):
            if p in orphan_set or not p.is_dir() or ".tmp-" in p.name:
                continue
            fields = _name_fields(p.name)
            if p.name.endswith(".partial"):
                n = len(list(p.glob("chunk_*.npz")))
                yield Item(p, "partial", model_dir.name, **fields,
                           problems=[f"resumable extraction ({n} chunks); the same command resumes it"])
                continue
            try:
                entry = CacheEntry(p)
            except CacheError as exc:
                problem = str(exc).replace(f"{p}: ", "")
                if "no meta.json" in problem:
                    problem = "no meta.json: an interrupted or damaged entry"
                yield Item(p, "broken", model_dir.name, **fields, problems=[problem])
                continue
            c = entry.meta.get("corpus", {})
            fields = {"corpus": c.get("name"), "lang": c.get("lang"), "split": c.get("split"),
                      "pooling": entry.meta.get("pooling")}
            try:
                problems = entry.verify(checksums=False)
                if not problems and checksums:
                    problems = entry.verify(checksums=True)
            except (OSError, KeyError, TypeError) as exc:
                problems = [f"unreadable: {exc}"]
            yield Item(p, "corrupt" if problems else "entry", entry.model, **fields, entry=entry,
                       problems=problems)


def _matches(item: Item, args) -> bool:
    model = getattr(args, "model", None)
    if model and item.model != model and item.model != slug(model) and item.path.parent.name != slug(model):
        return False
    corpus = getattr(args, "corpus", None)
    if corpus and item.corpus != corpus and item.corpus != slug(corpus):
        return False
    lang = getattr(args, "lang", None)
    if lang and item.lang not in [x.strip() for x in lang.split(",")]:
        return False
    return True


def _key_matches(item: Item, key: str) -> bool:
    key = key.rstrip("/")
    if key in (str(item.path), item.path.name):
        return True
    digest = item.entry.meta.get("key", "") if item.entry else ""
    tail = item.path.name.split(".")[-1] if item.kind in ("entry", "broken", "corrupt") else ""
    return len(key) >= 6 and (digest.startswith(key) or tail.startswith(key))


def _filters(args) -> str:
    return " ".join(f"--{k} {getattr(args, k)}" for k in ("model", "corpus", "lang") if getattr(args, k, None))


def run_cache(args) -> int:
    action = args.cache_cmd
    has_filter = bool(_filters(args))
    checksums = action == "verify" and not getattr(args, "quick", False)
    items = [i for i in scan(checksums=checksums) if _matches(i, args)]
    if action == "ls":
        entries = [i for i in items if i.kind in ("entry", "corrupt")]
        if not entries:
            print("no cache entries" + (" match " + _filters(args) if has_filter else ""))
        else:
            from .extraction import entry_precision

            print(f"{'model':20s} {'corpus':8s} {'lang':5s} {'split':9s} {'pool':5s} {'dtype':14s} "
                  f"{'layers':>6s} {'words':>8s} {'sents':>6s} {'size':>10s}  path")
            for i in entries:
                e = i.entry
                print(f"{e.model[:20]:20s} {i.corpus:8s} {i.lang:5s} {i.split:9s} {i.pooling:5s} "
                      f"{entry_precision(e.meta):14s} {e.n_layers:6d} {e.n_words:8d} {e.n_sentences:6d} {human_bytes(e.disk_bytes):>10s}  {e.path}")
        others = [i for i in items if i.kind not in ("entry", "corrupt")]
        for i in others:
            print(f"{i.kind.upper():10s} {i.path}  ({i.problems[0]})")
        if any(i.needs_repair for i in others):
            print("(run `probe cache verify` for details, `probe cache rm --broken` to remove them)")
        return 0
    if action == "verify":
        n_bad = 0
        labels = {"entry": "ok", "corrupt": "CORRUPT", "broken": "BROKEN", "orphan": "ORPHAN",
                  "stale-lock": "STALE", "partial": "partial"}
        for i in items:
            print(f"{labels[i.kind]:8s}{i.path}")
            if i.kind != "entry":
                for q in i.problems:
                    print(f"  - {q}")
            n_bad += i.needs_repair
        counts = {k: sum(i.kind == k for i in items) for k in labels}
        print(f"{counts['entry'] + counts['corrupt'] + counts['broken']} entries checked, "
              f"{counts['corrupt']} corrupt, {counts['broken']} broken (no readable meta.json), "
              f"{counts['orphan']} orphaned temporaries, {counts['stale-lock']} stale locks"
              + (f", {counts['partial']} resumable partial builds" if counts["partial"] else ""))
        if n_bad:
            print("remove the damaged items with `probe cache rm --broken` (an extraction rebuilds them)")
        return 1 if n_bad else 0
    if action == "rm":
        keys = list(getattr(args, "keys", None) or [])
        broken = getattr(args, "broken", False)
        if not (has_filter or keys or broken or args.all):
            raise ProbeError("cache rm needs KEY, a filter (--model/--corpus/--lang), --broken or --all")
        if broken:
            # a full check: a flipped byte is damage too
            items = [i for i in scan(checksums=not getattr(args, "quick", False)) if _matches(i, args)]
        chosen = []
        for i in items:
            if i.kind == "partial" and not (args.all or keys):
                continue  # resumable work: only removed when asked for by name or --all
            if keys and not any(_key_matches(i, k) for k in keys):
                continue
            if broken and not i.needs_repair and not (keys or args.all):
                continue
            chosen.append(i)
        if keys:
            unknown = [k for k in keys if not any(_key_matches(i, k) for i in chosen)]
            if unknown:
                raise ProbeError(f"no cache item matches {', '.join(unknown)}; see `probe cache ls`")
        if not chosen:
            what = " ".join(x for x in (_filters(args), "--broken" if broken else "") if x)
            print(f"nothing to remove: no cache item matches {what or 'the request'} "
                  f"(see `probe cache ls`)")
            return 0
        for i in chosen:
            if i.kind == "stale-lock":
                if not break_stale_lock(i.path):
                    print(f"kept    {i.path} (its lock is held again by a running build)")
                    continue
            elif i.path.is_dir():
                discard_dir(i.path)
            else:
                i.path.unlink(missing_ok=True)
            print(f"removed {i.path}" + ("" if i.kind == "entry" else f"  ({i.kind})"))
        return 0
    raise ProbeError(f"unknown cache command {action!r}")

