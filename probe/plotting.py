"""One figure style for the whole toolkit.

Every figure names the model and data it came from (:func:`provenance`), uses the
colour-blind-safe seaborn ``colorblind`` palette, and is saved as PNG and PDF with
the provenance embedded in the file metadata as well.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .files import atomic_open  # noqa: E402

LAYER_AXIS = "layer (0 = embeddings, L = last)"


def setup_style() -> None:
    import seaborn as sns

    sns.set_theme(context="paper", style="whitegrid", palette="colorblind", font_scale=1.1)
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 150, "savefig.bbox": "tight",
                         "axes.titlesize": 11, "figure.titlesize": 12})


def palette(n: int):
    import seaborn as sns

    return sns.color_palette("colorblind", n_colors=max(n, 1))


def provenance(meta: dict) -> str:
    """One caption line: model (fingerprint), data, seed and code version."""
    model = meta.get("model", {})
    fp = str(model.get("fingerprint", ""))[:10]
    parts = [f"model: {model.get('name', '?')}" + (f" ({fp})" if fp else "")]
    if meta.get("data_caption"):
        parts.append(f"data: {meta['data_caption']}")
    if meta.get("seed") is not None:
        parts.append(f"seed {meta['seed']}")
    versions = meta.get("versions", {})
    code = versions.get("probe", "")
    if versions.get("git"):
        code += f"@{versions['git'][:8]}"
    if code:
        parts.append(f"probe {code}")
    return " | ".join(parts)


def finish(fig, path: Path, meta: dict, title: str) -> list[Path]:
    """Title + provenance caption, then save ``path`` (.png) and its .pdf twin."""
    fig.suptitle(title)
    fig.text(0.5, -0.01, provenance(meta), ha="center", va="top", fontsize=7.5, color="0.35")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    caption = provenance(meta)
    out = []
    for suffix in (".png", ".pdf"):
        p = path.with_suffix(suffix)
        md = {"Title": title, "Description" if suffix == ".png" else "Subject": caption}
        with atomic_open(p) as f:
            fig.savefig(f, format=suffix[1:], metadata=md)
        out.append(p)
    plt.close(fig)
    return out
