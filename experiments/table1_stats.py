"""What the Table 1 experiment computes from its outputs besides BLEU: the weights of a tuning
result, the perturbed start of a MERT run, the difference between two scorings of a table, and the
RNN score's correlation with the table's own."""
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


def table_correlations(sources: list[str], scores: np.ndarray, rnn_column: int = 4, min_targets: int = 5) -> dict:
    """The RNN's log p(target|source) (column ``rnn_column`` of a scored table) against each of the
    table's four scores, as the decoder sees them (Moses's max(ln x, -100)): Pearson and
    Spearman correlation over all pairs, and Spearman within each source phrase's targets
    averaged over the sources with at least ``min_targets`` targets (how alike the two rank
    the candidates the decoder chooses among)."""
    from scipy.stats import pearsonr, spearmanr  # scipy: only for this statistic
    logs = moses_logs(np.asarray(scores, float))
    rnn = logs[:, rnn_column]
    order = np.argsort(np.asarray(sources, dtype=object), kind="stable")
    src_sorted = np.asarray(sources, dtype=object)[order]
    starts = np.flatnonzero(np.r_[True, src_sorted[1:] != src_sorted[:-1]])
    ends = np.r_[starts[1:], len(order)]
    groups = [order[a:b] for a, b in zip(starts, ends) if b - a >= min_targets]
    out = {"pairs": int(len(rnn)), "sources": int(len(starts)), "sources_with_enough_targets": len(groups),
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
