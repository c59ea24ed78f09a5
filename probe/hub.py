"""Hugging Face Hub access for model downloads: timeouts, file patterns, clear errors.

``huggingface_hub`` reads its timeouts from the environment when it is first imported, so
:func:`set_hub_timeouts` runs when ``probe`` is imported (``probe/__init__.py``), before
``transformers`` or ``huggingface_hub`` can be; the download call also passes the timeout
explicitly, which holds even when the caller imported ``huggingface_hub`` first.
"""
from __future__ import annotations

import os
from pathlib import Path

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
    """Weight files to fetch given the files a snapshot holds: the safetensors when there
    are any, else the PyTorch ``*.bin`` (older repositories have only ``pytorch_model.bin``).
    Never both: that would download the weights twice."""
    if any(str(f).endswith(".safetensors") for f in files):
        return ["*.safetensors"]
    return ["*.bin"]


def snapshot(repo_id: str, local_only: bool) -> str:
    """A local snapshot directory of ``repo_id``: config, tokenizer and one weight format.

    The safetensors are asked for first; a repository without any is fetched again for its
    ``*.bin`` weights (config and tokenizer are then already cached). ``local_only``: from
    the Hugging Face cache only. Errors are the ``huggingface_hub`` ones;
    :func:`cannot_load_message` turns them into one line with a hint.
    """
    set_hub_timeouts()
    from huggingface_hub import snapshot_download

    def fetch(weights: list[str]) -> str:
        return snapshot_download(repo_id, local_files_only=local_only, allow_patterns=_META_PATTERNS + weights,
                                 etag_timeout=_timeout())

    path = fetch(["*.safetensors"])
    if weight_patterns([p.name for p in Path(path).iterdir()]) == ["*.bin"]:
        path = fetch(["*.bin"])
        if not any(Path(path).glob("*.bin")):
            raise FileNotFoundError(f"{repo_id}: no *.safetensors or *.bin weights"
                                    + (" in the local cache" if local_only else ""))
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
