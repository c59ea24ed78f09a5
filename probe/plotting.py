"""One figure style for the whole toolkit.

Every figure names the model and data it came from (:func:`provenance`), uses the
colour-blind-safe seaborn ``colorblind`` palette, and is saved as PNG and PDF with
the provenance embedded in the file metadata as well.
"""
from __future__ import annotations

from pathlib import Path

from .files import atomic_open

# No ``matplotlib.use`` here: a library must not switch a live Jupyter kernel off its inline
# backend. The CLI alone picks a non-interactive backend (``probe.cli.main``).

LAYER_AXIS = "layer (0 = embeddings, L = last)"


def setup_style() -> None:
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(context="paper", style="whitegrid", palette="colorblind", font_scale=1.1)
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 150, "savefig.bbox": "tight",
                         "axes.titlesize": 11, "figure.titlesize": 12})


def palette(n: int):
    import seaborn as sns

    return sns.color_palette("colorblind", n_colors=max(n, 1))


def provenance(meta: dict) -> str:
    """One caption line: model (fingerprint), data, the forward's precision (``precision``:
    a report's record, see :func:`probe.extraction.precision_record`), seed and code version."""
    from .options import precision_text

    model = meta.get("model", {})
    fp = str(model.get("fingerprint", ""))[:10]
    parts = [f"model: {model.get('name', '?')}" + (f" ({fp})" if fp else "")]
    if meta.get("data_caption"):
        parts.append(f"data: {meta['data_caption']}")
    if meta.get("precision"):
        parts.append(precision_text(meta["precision"]))
    if meta.get("seed") is not None:
        parts.append(f"seed {meta['seed']}")
    versions = meta.get("versions", {})
    code = versions.get("probe", "")
    if versions.get("git"):
        code += f"@{versions['git'][:8]}"
    if code:
        parts.append(f"probe {code}")
    return " | ".join(parts)


def _figure_class():
    """A Figure that Jupyter shows once. ``res.plot_tradeoff()`` ending a cell returns the
    figure, which IPython displays, *and* leaves it open in pyplot, which the inline backend
    draws again at the end of the cell; displayed once, the figure leaves pyplot instead."""
    from matplotlib.figure import Figure

    class ProbeFigure(Figure):
        def _ipython_display_(self):
            import io

            import matplotlib.pyplot as plt
            from IPython.display import display

            buf = io.BytesIO()
            self.savefig(buf, format="png")
            display({"image/png": buf.getvalue(), "text/plain": repr(self)}, raw=True)
            manager = getattr(self.canvas, "manager", None)
            if manager is not None and plt.fignum_exists(manager.num):
                plt.close(self)  # shown: the backend's end-of-cell drawing would repeat it

    return ProbeFigure


def subplots(ax, n: int = 1, figsize=(6.4, 4.8)):
    """``(figure, [axes])`` for a plot of ``n`` panels, like scikit-learn's Display ``plot(ax=)``.

    ``ax=None`` creates a figure (through pyplot, so Jupyter shows it inline and ``plt.show()``
    works in a script); otherwise ``ax`` is one Axes (``n == 1``) or a sequence of ``n`` Axes,
    all drawn into their own figure.
    """
    if ax is None:
        import matplotlib.pyplot as plt

        setup_style()
        # constrained layout keeps the suptitle clear of two-line panel titles
        fig, axes = plt.subplots(1, n, figsize=figsize, squeeze=False, FigureClass=_figure_class(),
                                 layout="constrained")
        return fig, list(axes[0])
    import numpy as np

    axes = list(np.ravel(np.asarray(ax, dtype=object)))
    if len(axes) != n:
        from .errors import ParameterError

        raise ParameterError(f"this plot draws {n} panel(s): pass ax= as {'one Axes' if n == 1 else f'{n} Axes'}, "
                             f"not {len(axes)}")
    return axes[0].figure, axes


def saved_paths(path) -> list[Path]:
    """The files :func:`save_figure` writes for ``path``: its ``.png`` and ``.pdf``."""
    path = Path(path)
    return [path.with_suffix(".png"), path.with_suffix(".pdf")]


def save_figure(fig, path, meta: dict | None = None, title: str = "") -> list[Path]:
    """Save ``fig`` as ``path`` (.png) and its .pdf twin, atomically, with the provenance in the
    file metadata; returns the paths. The figure stays open (the caller owns it)."""
    caption = provenance(meta or {})
    out = []
    for p in saved_paths(path):
        p.parent.mkdir(parents=True, exist_ok=True)
        md = {"Title": title, "Description" if p.suffix == ".png" else "Subject": caption}
        with atomic_open(p) as f:
            fig.savefig(f, format=p.suffix[1:], metadata=md)
        out.append(p)
    return out


def decorate(fig, meta: dict, title: str) -> None:
    """Title and provenance caption on a figure the toolkit created."""
    import textwrap

    fig.suptitle(title)
    # wrapped to the figure's width: one long line would widen the saved (tight) figure
    # past its axes and shrink every panel when shown at page width
    width = max(40, int(fig.get_figwidth() * 17))
    fig.text(0.5, -0.01, "\n".join(textwrap.wrap(provenance(meta), width)), ha="center", va="top",
             fontsize=7.5, color="0.35")


def show_or_save(fig, path, meta: dict, title: str, *, owned: bool = True):
    """The end of every ``plot_*``: caption the figure (when the plot created it), save it only
    when ``path`` is given, and return the Figure (shown inline by Jupyter, never closed here)."""
    if owned:
        decorate(fig, meta, title)
    if path is not None:
        save_figure(fig, path, meta, title)
    return fig


def finish(fig, path: Path, meta: dict, title: str) -> list[Path]:
    """Title + provenance caption, save ``path`` (.png) and its .pdf twin, close the figure;
    returns the paths (for scripts that only write files, such as the analyses)."""
    import matplotlib.pyplot as plt

    decorate(fig, meta, title)
    try:
        return save_figure(fig, path, meta, title)
    finally:
        plt.close(fig)
