"""What the Table 1 experiment computes from its outputs besides BLEU: the weights of a tuning
result, the perturbed start of a MERT run, the difference between two scorings of a table, and the
RNN score's correlation with the table's own and how much of it they explain."""
from __future__ import annotations

import itertools
import json
import math

import numpy as np

from moses_integration.decoder import moses_log, moses_logs
from rescorer.phrase_table import open_binary

def tuned_weights(path: str) -> dict:
    """The weights of a tuning result (what a test stage depends on; not the times it records)."""
    with open(path) as f:
        return json.load(f)["weights"]


def perturbed_start(w0: np.ndarray, tunable: np.ndarray, seed: int) -> np.ndarray:
    """The starting weights of one MERT run: each tunable weight times its own factor, log-uniform
    in [1/2, 2] from the run's seed (signs kept).  Runs that all start from the same weights decode
    the same first n-best lists and, as random restarts seldom beat the climb from the current
    weights, end with the same weights: no optimizer variance to measure (Clark et al., 2011)."""
    rng = np.random.default_rng([seed, 7])
    factor = np.exp(rng.uniform(-math.log(2.0), math.log(2.0), len(w0)))
    return np.where(tunable, w0 * factor, w0)


def score_differences(fp32_table: str, other_table: str, column: int = 4) -> dict:
    """|differences| of the RNN column between two scorings of one table, line by line, as the
    decoder sees the column: max(ln x, -100), Moses's reading of a dense score."""
    from rescorer.scorer import difference_stats  # torch: only where it is needed
    exact, approx = [], []
    with open_binary(fp32_table) as a, open_binary(other_table) as b:
        for n, (x, y) in enumerate(itertools.zip_longest(a, b), 1):
            if x is None or y is None:
                raise ValueError(f"{other_table if y is None else fp32_table}: ends at line {n - 1}, "
                                 f"but {fp32_table if y is None else other_table} goes on")
            exact.append(moses_log(float(x.split(b" ||| ")[2].split()[column])))
            approx.append(moses_log(float(y.split(b" ||| ")[2].split()[column])))
    return {"pairs": len(exact), **difference_stats(np.array(exact), np.array(approx))}


TABLE_COLUMNS = ("p(source|target)", "lex(source|target)", "p(target|source)", "lex(target|source)")


def source_ids(sources: list[str]) -> np.ndarray:
    """Each pair's source phrase as a number: its rank among the distinct source phrases."""
    return np.unique(np.asarray(sources, dtype=object), return_inverse=True)[1]


def table_correlations(sources: list[str], scores: np.ndarray, rnn_column: int = 4, min_targets: int = 5) -> dict:
    """The RNN's log p(target|source) (column ``rnn_column`` of a scored table) against each of the
    table's four scores, as the decoder sees them (Moses's max(ln x, -100)): Pearson and
    Spearman correlation over all pairs, and Spearman within each source phrase's targets
    averaged over the sources with at least ``min_targets`` targets (how alike the two rank
    the candidates the decoder chooses among)."""
    from scipy.stats import pearsonr, spearmanr  # scipy: only for this statistic
    logs = moses_logs(np.asarray(scores, float))
    rnn = logs[:, rnn_column]
    ids = source_ids(sources)
    order = np.argsort(ids, kind="stable")
    counts = np.bincount(ids)
    ends = np.cumsum(counts)
    groups = [order[a:b] for a, b in zip(ends - counts, ends) if b - a >= min_targets]
    out = {"pairs": int(len(rnn)), "sources": int(len(counts)), "sources_with_enough_targets": len(groups),
           "min_targets": min_targets, "columns": {}}
    for j, name in enumerate(TABLE_COLUMNS):
        x = logs[:, j]
        within = []
        for g in groups:
            if np.ptp(x[g]) > 0 and np.ptp(rnn[g]) > 0:
                within.append(spearmanr(x[g], rnn[g])[0])
        out["columns"][name] = {"pearson": float(pearsonr(x, rnn)[0]), "spearman": float(spearmanr(x, rnn)[0]),
                                "spearman_within_source": float(np.mean(within)) if within else None}
    return out


def _r2(x: np.ndarray, y: np.ndarray) -> float:
    """R² of the least-squares fit of ``y`` on the columns of ``x`` (which hold any constant)."""
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    resid = y - x @ coef
    total = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - float(resid @ resid) / total if total > 0 else float("nan")


def table_fit(sources: list[str], targets: list[str], scores: np.ndarray, rnn_column: int = 4) -> dict:
    """How much of the RNN's log p(target|source) the log-linear model could already express with
    the table's features: the R² of a least-squares fit of it on the table's four scores (as the
    decoder reads them, max(ln x, -100)) and the target phrase's length in words (what the word
    penalty counts).  ``within_source``: every variable minus its mean over the source phrase's
    targets, so that only what ranks the candidates of one source span counts (a constant per
    source does not change that choice); ``lex_within_source``: the same with lex(target|source)
    alone; ``all_pairs``: over all pairs with a constant and the source's length as well (what
    also weighs one segmentation of the sentence against another).  Near 1: a weighting of the
    existing features says nearly all the RNN score says."""
    logs = moses_logs(np.asarray(scores, float))
    rnn = logs[:, rnn_column]
    tlen = np.array([len(t.split()) for t in targets], float)
    slen = np.array([len(s.split()) for s in sources], float)
    group = source_ids(sources)
    counts = np.bincount(group)

    def centred(v: np.ndarray) -> np.ndarray:
        return v - (np.bincount(group, weights=v) / counts)[group]

    feats = np.column_stack([logs[:, :4], tlen])
    within = np.column_stack([centred(c) for c in feats.T])
    y = centred(rnn)
    return {"pairs": int(len(rnn)), "regressors": list(TABLE_COLUMNS) + ["target length"],
            "within_source": _r2(within, y),
            "lex_within_source": _r2(within[:, [3]], y),
            "all_pairs": _r2(np.column_stack([feats, slen, np.ones(len(rnn))]), rnn)}
