"""The figure of a :class:`~probe.compare.CompareResult`: every model's curves against relative
depth, one panel per curve (:func:`draw_curves`, drawn by :meth:`CompareResult.plot`, which adds
the caption and metadata and saves when given a path)."""
from __future__ import annotations

from ..tasks import POS
from .curves import CURVES

#: (panel title, y-axis label) of each curve in :meth:`CompareResult.plot`
PANELS = {
    "cka": ("Cross-lingual CKA, mean over targets", "debiased linear CKA"),
    "retrieval": ("PUD retrieval en↔xx, pooled", "accuracy@1 (both directions)"),
    f"{POS}_zero_shot": ("Zero-shot POS probe, pooled", "accuracy (fraction of words)"),
}


def draw_curves(res, ax=None):
    """CKA, retrieval and zero-shot POS of each model of ``res`` against relative depth into
    ``ax`` (one Axes per panel; None: a new figure); ★ marks each peak, rings the layers within
    noise of it. Returns the Figure."""
    from ..plotting import palette, subplots

    shown = [c for c in CURVES if all(c in res.report["peaks"][m] for m in res.models)]
    fig, axes = subplots(ax, len(shown), figsize=(5.0 * len(shown), 3.9))
    cols = palette(len(res.models))
    for ax, curve in zip(axes, shown):
        for m, c in zip(res.report["models"], cols):
            cur = res.report["curves"][m["name"]]
            x, y = cur["relative_depth"], cur[curve]
            ax.plot(x, y, marker="o", ms=3, color=c, label=f"{m['name']} (L = {m['n_layers']})")
            pk = res.report["peaks"][m["name"]][curve]
            ax.plot([pk["relative"]], [pk["value"]], marker="*", ms=11, color=c, mec="k", mew=0.5)
            tied = [l for l in pk.get("within_noise", []) if l != pk["layer"]]
            if tied:  # the other layers within noise of the peak, ringed on the curve
                ax.scatter([x[l] for l in tied], [y[l] for l in tied], s=70, facecolors="none",
                           edgecolors=c, linewidths=1.2, zorder=3)
        title, ylabel = PANELS[curve]
        ax.set_title(title)
        ax.set_xlabel("relative depth (layer / L)")
        ax.set_ylabel(ylabel)
        ax.set_xlim(-0.03, 1.03)
    axes[0].legend(fontsize=8)
    return fig
