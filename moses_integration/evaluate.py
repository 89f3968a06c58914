"""BLEU on detokenised output with sacrebleu, paired significance tests between systems, and
the statistics of several tuning runs per system (Clark et al., 2011).

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


# -- several tuning runs per system (Clark et al., 2011, as MultEval reports them) -------------
def bootstrap_sd(hyps: list[str], refs: list[str], n_samples: int = 1000) -> float:
    """s_sel: the standard deviation of BLEU over bootstrap resamples of the test set (one run),
    with sacrebleu's own resampler and seed (``SACREBLEU_SEED``, 12345 by default)."""
    from sacrebleu.significance import _bootstrap_resample
    metric = BLEU()
    stats = metric._extract_corpus_statistics(hyps, [refs])
    _, scores = _bootstrap_resample(stats, metric, n_samples)
    return float(np.std([s.score for s in scores]))


def paired_test(baseline: list[str], system: list[str], refs: list[str], test: str = "ar",
                n_samples: int = 0) -> dict:
    """sacrebleu's paired significance test of ``system`` against ``baseline`` (``ar``: approximate
    randomization, 10,000 trials by default; ``bs``: paired bootstrap, 1,000 resamples):
    both scores, the p-value and the test's signature."""
    from sacrebleu.significance import PairedTest
    if not (len(baseline) == len(system) == len(refs)):
        raise ValueError(f"{len(baseline)} baseline lines, {len(system)} system lines, {len(refs)} references")
    sigs, scores = PairedTest([("baseline", baseline), ("system", system)], {"BLEU": BLEU()}, [refs],
                              test_type=test, n_samples=n_samples)()
    name = next(k for k in scores if k != "System")  # "BLEU", as sacrebleu names the metric
    base_res, sys_res = scores[name]
    return {"baseline": base_res.score, "system": sys_res.score, "p_value": float(sys_res.p_value),
            "signature": str(sigs[name])}


def describe_runs(runs: list[list[str]], refs: list[str]) -> dict:
    """MultEval's view of a system tuned several times (Clark et al., 2011): BLEU of each run, their
    mean, s_opt (standard deviation over the tuning runs) and s_sel (bootstrap standard deviation
    within a run, averaged over the runs).  Its p-value against another system over all runs
    together is ``paired_test_all_runs``."""
    scores = [corpus_bleu(h, refs)[0] for h in runs]
    return {"bleu": scores, "mean": float(np.mean(scores)),
            "s_opt": float(np.std(scores, ddof=1)) if len(scores) > 1 else 0.0,
            "s_sel": float(np.mean([bootstrap_sd(h, refs) for h in runs]))}


def paired_test_all_runs(baseline: list[list[str]], system: list[list[str]], refs: list[str]) -> dict:
    """MultEval's p-value of a system tuned several times against a baseline tuned as often:
    ``paired_test`` (approximate randomization) on each one's runs concatenated, run k paired with
    baseline run k."""
    return paired_test([x for run in baseline for x in run], [x for run in system for x in run],
                       refs * len(baseline), "ar")
