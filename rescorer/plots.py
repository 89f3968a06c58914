"""Pictures people would rather look at than read: training curves."""
from __future__ import annotations

import os

from .fileio import atomic_write


class _Pyplot:
    """``matplotlib.pyplot`` (Agg backend), imported at its first use: a process that draws
    nothing (most of an experiment's stages, each a process of its own) does not pay for it."""

    def __getattr__(self, name: str):
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot
        return getattr(matplotlib.pyplot, name)


plt = _Pyplot()


def plot_curves(history: dict, path: str | os.PathLike, title: str = "RNN Encoder-Decoder training",
                baseline: float | None = None, baseline_label: str = "unigram") -> None:
    """Training and validation perplexity per target symbol against updates (log scale)."""
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    if history.get("train"):
        steps, ppl = zip(*history["train"])
        ax.plot(steps, ppl, lw=1, alpha=0.8, label="training (running)")
    if history.get("valid"):
        steps, ppl = zip(*history["valid"])
        ax.plot(steps, ppl, "o-", ms=3, lw=1.5, label="validation")
    if baseline:
        ax.axhline(baseline, ls="--", color="grey", lw=1, label=f"{baseline_label} baseline ({baseline:.0f})")
    ax.set_yscale("log")
    ax.set_xlabel("updates (minibatches)")
    ax.set_ylabel("perplexity per target symbol")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    save_figure(fig, path)


def save_figure(fig, path: str | os.PathLike) -> None:
    """Lay out, write as PNG through a temporary file, and free the figure."""
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png")
    plt.close(fig)
