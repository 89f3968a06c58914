"""BLEU on detokenised output with sacrebleu, and paired bootstrap resampling between systems.

Decoder output is Moses-tokenised, escaped and truecased: ``postprocess`` undoes that
(sacremoses's detruecaser and detokeniser, which also unescapes ``&apos;`` and friends)
before sacrebleu scores it against the raw references with its own tokenisation, as WMT
does.  The signature is returned with every score.
"""
from __future__ import annotations

import numpy as np
from sacrebleu.metrics import BLEU


def postprocess(lines: list[str], lang: str = "fr") -> list[str]:
    from sacremoses import MosesDetokenizer, MosesDetruecaser
    detok, detrue = MosesDetokenizer(lang=lang), MosesDetruecaser()
    return [detok.detokenize(detrue.detruecase(line, return_str=True).split()) for line in lines]


def corpus_bleu(hyps: list[str], refs: list[str]) -> tuple[float, str, str]:
    """(score, formatted result, signature) of detokenised hypotheses against raw references."""
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
    metric = BLEU()
    res = metric.corpus_score(hyps, [refs])
    return res.score, str(res), str(metric.get_signature())


def paired_bootstrap(baseline: list[str], system: list[str], refs: list[str], n_samples: int = 1000,
                     seed: int = 12345) -> dict:
    """Koehn's paired bootstrap resampling (as sacrebleu's ``--paired-bs``): is ``system`` better?

    Returns both BLEU scores, the system's mean and 95% interval over resamples, and the
    p-value of the hypothesis that the system is not better than the baseline.
    """
    metric = BLEU()
    s_base = np.array(metric._extract_corpus_statistics(baseline, [refs]), dtype=float)
    s_sys = np.array(metric._extract_corpus_statistics(system, [refs]), dtype=float)
    rng = np.random.default_rng(seed)
    n = len(refs)
    idx = rng.integers(0, n, size=(n_samples, n))
    base_scores = np.array([metric._compute_score_from_stats(list(s_base[i].sum(0))).score for i in idx])
    sys_scores = np.array([metric._compute_score_from_stats(list(s_sys[i].sum(0))).score for i in idx])
    better = int((sys_scores - base_scores > 0).sum())
    return {
        "baseline": metric._compute_score_from_stats(list(s_base.sum(0))).score,
        "system": metric._compute_score_from_stats(list(s_sys.sum(0))).score,
        "system_mean": float(sys_scores.mean()),
        "system_95ci": (float(np.percentile(sys_scores, 2.5)), float(np.percentile(sys_scores, 97.5))),
        "p_value": (n_samples - better + 1) / (n_samples + 1),
        "samples": n_samples,
        "signature": str(metric.get_signature()),
    }
