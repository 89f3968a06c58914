"""2-D maps of what the network learned (the paper's figures 4 and 5): the source word embeddings
e(x) and the phrase summaries c, laid out by scikit-learn's Barnes-Hut t-SNE.

Each map is a PNG with a readable subset of labels (frequent items first, a label only where it
does not cover another) and a TSV with the coordinates of every item.
"""
from __future__ import annotations

import html
import os
from collections import Counter

import numpy as np
import torch
from tqdm import tqdm

from .fileio import atomic_write
from .model import pad
from .phrase_table import SEP, raw_lines
from .plots import plt, save_figure
from .scorer import PhraseScorer
from .vocab import UNK_ID


def tsne(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """Barnes-Hut t-SNE to 2-D (scikit-learn), PCA initialisation, a fixed seed."""
    from sklearn.manifold import TSNE  # scikit-learn: only the maps need it, and it is slow to import
    perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", method="barnes_hut",
                random_state=seed).fit_transform(np.asarray(x, dtype=np.float64))


def frequent_sources(table: str | os.PathLike, n: int, min_words: int = 1, progress: bool = True) -> list[str]:
    """The ``n`` source phrases of at least ``min_words`` words with the most target phrases in the
    table (the table's lines of a source are its translations: a proxy for its frequency)."""
    counts: Counter = Counter()
    path = os.fspath(table)
    for _, raw in tqdm(raw_lines(path), desc=f"reading {os.path.basename(path)}", unit=" lines", unit_scale=True,
                       mininterval=2.0, disable=not progress, leave=False):
        k = raw.find(SEP)
        if k > 0 and raw.count(b" ", 0, k) + 1 >= min_words:
            counts[raw[:k]] += 1
    return [s.decode("utf-8", "replace") for s, _ in counts.most_common(n)]


@torch.inference_mode()
def phrase_summaries(scorer: PhraseScorer, phrases: list[str], batch: int = 1024) -> np.ndarray:
    """c = tanh(V h_N) of each source phrase (rows in input order)."""
    enc = scorer.model.encoder
    out = []
    for a in range(0, len(phrases), batch):
        x, lengths = pad([scorer.src_vocab.ids(p.split()) for p in phrases[a:a + batch]], scorer.device)
        out.append(enc(x, lengths).double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, scorer.model.cfg.hidden))


def word_embeddings(scorer: PhraseScorer, n: int) -> tuple[list[str], np.ndarray]:
    """The ``n`` most frequent source words of the shortlist (</s> and [UNK] left out) and their e(x)."""
    ids = list(range(UNK_ID + 1, min(len(scorer.src_vocab), UNK_ID + 1 + n)))
    w = scorer.model.encoder.embed.weight.detach().double().cpu().numpy()
    return [scorer.src_vocab.words[i] for i in ids], w[ids]


def label_subset(xy: np.ndarray, max_labels: int = 150, min_dist: float = 0.035) -> list[int]:
    """Indices to label: in the given order (most frequent first), each at least ``min_dist`` of
    the plot's extent away from every label already placed."""
    span = np.ptp(xy, axis=0)
    span[span == 0] = 1.0
    z = (xy - xy.min(0)) / span
    chosen: list[int] = []
    for i in range(len(z)):
        if len(chosen) >= max_labels:
            break
        if not chosen or np.min(np.abs(z[chosen] - z[i]).max(1)) >= min_dist:
            chosen.append(i)
    return chosen


def display_label(text: str) -> str:
    """A label as a reader wants it on a map: Moses's escapes undone (``&apos;`` is ', ``&#124;``
    is |) and matplotlib's math sign ``$`` shown as itself."""
    return html.unescape(text).replace("$", r"\$")


def write_map(labels: list[str], xy: np.ndarray, png: str, tsv: str, title: str, max_labels: int = 150) -> None:
    with atomic_write(tsv, "w") as f:
        f.write("label\tx\ty\n")
        for lab, (x, y) in zip(labels, xy):
            f.write(f"{lab}\t{x:.4f}\t{y:.4f}\n")
    fig, ax = plt.subplots(figsize=(12, 12), dpi=100)
    ax.scatter(xy[:, 0], xy[:, 1], s=4, c="#9aa7b8", lw=0)
    for i in label_subset(xy, max_labels):
        ax.annotate(display_label(labels[i]), xy[i], fontsize=8, ha="center", va="bottom", xytext=(0, 2),
                    textcoords="offset points")
        ax.plot(*xy[i], "o", ms=2.5, color="#24466b")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    save_figure(fig, png)


def embed_maps(scorer: PhraseScorer, table: str | os.PathLike | None, out_dir: str, words: int = 1000,
               phrases: int = 2000, min_words: int = 2, seed: int = 0, progress: bool = True) -> dict:
    """The word map and (with a table) the phrase map into ``out_dir``; their file names."""
    os.makedirs(out_dir, exist_ok=True)
    made = {}
    labels, vecs = word_embeddings(scorer, words)
    if len(labels) >= 5:
        write_map(labels, tsne(vecs, seed), os.path.join(out_dir, "words.png"), os.path.join(out_dir, "words.tsv"),
                  f"source word embeddings e(x), {len(labels)} most frequent words (t-SNE)")
        made["words"] = len(labels)
    if table is not None and phrases > 0:
        srcs = frequent_sources(table, phrases, min_words, progress)
        if len(srcs) >= 5:
            write_map(srcs, tsne(phrase_summaries(scorer, srcs), seed), os.path.join(out_dir, "phrases.png"),
                      os.path.join(out_dir, "phrases.tsv"),
                      f"phrase summaries c of {len(srcs)} source phrases of {min_words}+ words (t-SNE)", 120)
            made["phrases"] = len(srcs)
    return made
