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
from sacrebleu.significance import PairedTest, _bootstrap_resample


def postprocess(lines: list[str], lang: str = "fr") -> list[str]:
    from sacremoses import MosesDetokenizer, MosesDetruecaser  # only a process that evaluates imports it
    detok, detrue = MosesDetokenizer(lang=lang), MosesDetruecaser()
    return [detok.detokenize(detrue.detruecase(line, return_str=True).split()) for line in lines]


def corpus_bleu(hyps: list[str], refs: list[str]) -> tuple[float, str, str]:
    """(score, formatted result, signature) of detokenised hypotheses against raw references."""
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
    metric = BLEU()
    res = metric.corpus_score(hyps, [refs])
    return res.score, str(res), str(metric.get_signature())


# -- several tuning runs per system (Clark et al., 2011, as MultEval reports them) -------------
def bootstrap_sd(hyps: list[str], refs: list[str], n_samples: int = 1000) -> float:
    """s_sel: the standard deviation of BLEU over bootstrap resamples of the test set (one run),
    with sacrebleu's own resampler and seed (``SACREBLEU_SEED``, 12345 by default)."""
    metric = BLEU()
    stats = metric._extract_corpus_statistics(hyps, [refs])
    _, scores = _bootstrap_resample(stats, metric, n_samples)
    return float(np.std([s.score for s in scores]))


def paired_test(baseline: list[str], system: list[str], refs: list[str], test: str = "ar",
                n_samples: int = 0) -> dict:
    """sacrebleu's paired significance test of ``system`` against ``baseline`` (``ar``: approximate
    randomization, 10,000 trials by default; ``bs``: paired bootstrap, 1,000 resamples):
    both scores, the p-value and the test's signature; the bootstrap adds the system's mean
    over the resamples and the half-width of its 95% interval."""
    if not (len(baseline) == len(system) == len(refs)):
        raise ValueError(f"{len(baseline)} baseline lines, {len(system)} system lines, {len(refs)} references")
    sigs, scores = PairedTest([("baseline", baseline), ("system", system)], {"BLEU": BLEU()}, [refs],
                              test_type=test, n_samples=n_samples)()
    name = next(k for k in scores if k != "System")  # "BLEU", as sacrebleu names the metric
    base_res, sys_res = scores[name]
    out = {"baseline": base_res.score, "system": sys_res.score, "p_value": float(sys_res.p_value),
           "signature": str(sigs[name])}
    if sys_res.mean is not None:  # the bootstrap's: the system's mean over resamples and its 95% interval
        out.update(system_mean=float(sys_res.mean), system_ci=float(sys_res.ci))
    return out


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
