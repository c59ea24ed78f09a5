"""Hugging Face Hub access for model downloads: timeouts, file patterns, clear errors.

``huggingface_hub`` reads its timeouts from the environment when it is first imported, so
:func:`set_hub_timeouts` runs when ``probe`` is imported (``probe/__init__.py``), before
``transformers`` or ``huggingface_hub`` can be; the download call also passes the timeout
explicitly, which holds even when the caller imported ``huggingface_hub`` first.
"""
from __future__ import annotations

import os
from pathlib import Path

from .errors import ProbeError

# Seconds to wait for the Hub before falling back (the default 10 s per file, with retries,
# makes an offline run crawl). $HF_HUB_ETAG_TIMEOUT / $HF_HUB_DOWNLOAD_TIMEOUT override it.
HUB_TIMEOUT_S = 5
# Tokenizer and config files; weights are chosen per repository (see weight_patterns).
_META_PATTERNS = ["*.json", "*.txt", "*.model", "sentencepiece*", "spiece*"]


def set_hub_timeouts() -> None:
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", str(HUB_TIMEOUT_S))
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", str(HUB_TIMEOUT_S))


def _timeout() -> float:
    try:
        return float(os.environ.get("HF_HUB_ETAG_TIMEOUT", HUB_TIMEOUT_S))
    except ValueError:
        return float(HUB_TIMEOUT_S)


def weight_patterns(files: list[str]) -> list[str]:
    """Weight files to fetch from a repository listing ``files``: the safetensors when it
    has any, else the PyTorch ``*.bin`` (older repositories have only ``pytorch_model.bin``).
    Never both: that would download the weights twice."""
    if any(f.endswith(".safetensors") for f in files):
        return ["*.safetensors"]
    return ["*.bin"]


def snapshot(repo_id: str, local_only: bool) -> str:
    """A local snapshot directory of ``repo_id``: config, tokenizer and one weight format.

    ``local_only``: from the Hugging Face cache only (either weight format). Errors are
    the ``huggingface_hub`` ones; :func:`unreachable_message` turns them into a hint.
    """
    set_hub_timeouts()
    from huggingface_hub import HfApi, snapshot_download

    if local_only:
        patterns = _META_PATTERNS + ["*.safetensors", "*.bin"]
    else:
        files = HfApi().list_repo_files(repo_id)
        patterns = _META_PATTERNS + weight_patterns(files)
    path = snapshot_download(repo_id, local_files_only=local_only, allow_patterns=patterns,
                             etag_timeout=_timeout())
    if local_only and not any(Path(path).glob("*.safetensors")) and not any(Path(path).glob("*.bin")):
        raise FileNotFoundError(f"{repo_id}: cached snapshot holds no weights")
    return path


def cannot_load_message(name: str, exc: BaseException) -> str:
    """One line on why ``name`` could not be had from the Hub and how to get it offline."""
    kind = type(exc).__name__
    if kind in ("RepositoryNotFoundError", "GatedRepoError", "RevisionNotFoundError"):
        why = f"the Hugging Face Hub has no accessible repository {name!r} ({kind})"
    elif kind == "HFValidationError":
        why = f"{name!r} is not a valid Hugging Face model id"
    else:
        why = (f"it is not in the local Hugging Face cache and the Hub is unreachable ({kind}); to use it "
               f"offline, download it where the Hub is reachable (`huggingface-cli download {name}`, "
               f"or `hf download {name}`), then copy the cache folder ($HF_HOME, default "
               f"~/.cache/huggingface) to this machine and set HF_HOME to it, or pass the "
               f"model's local directory")
    return f"cannot load model {name!r}: {why}."
