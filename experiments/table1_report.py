"""The report of experiments/reproduce.py: results.md, results.json and results.png, written from
the experiment's outputs only (decoded test sets, tuning logs, training summaries, stage records).

BLEU is sacrebleu's on detruecased, detokenised output against the raw references, with its
signature.  Per system and test set: every run's BLEU, mean and standard deviation over the
runs, the difference to the baseline's mean, sacrebleu's paired approximate randomization of
run k against baseline run k, and MultEval's view (Clark et al., 2011): s_opt (s.d. over the
tuning runs), s_sel (bootstrap s.d. within a run, averaged over runs) and one approximate
randomization over all runs together.
"""
from __future__ import annotations

import json
import math
import os

import kenlm
import numpy as np

from moses_integration import pipeline as P
from moses_integration.evaluate import corpus_bleu, describe_runs, paired_test, paired_test_all_runs, postprocess
from moses_integration.mert import default_ranges
from rescorer.machine import describe as describe_machine
from rescorer.plots import plt, save_figure
from rescorer.text import read_lines as text_lines_of

from experiments.common import PAPER, PAPER_OF, markdown_table, read_lines, write_results


def _detok(path: str, lang: str) -> list[str]:
    """The detruecased, detokenised lines of a decoder output (cached beside it)."""
    cache = path + ".detok"
    if os.path.exists(cache) and os.path.getmtime(cache) >= os.path.getmtime(path):
        return text_lines_of(cache)
    lines = postprocess(text_lines_of(path), lang)
    P.write_lines(cache, lines)
    return lines


def _perplexities(exp, tok_ref: str | None, span, cslm_done: bool) -> dict:
    """KenLM's and the CSLM's perplexity (once it is trained) on a tokenised reference (every
    word and </s>)."""
    if not tok_ref:
        return {}
    sents = [line.split() for line in read_lines(tok_ref, span)]
    n = sum(len(s) + 1 for s in sents)
    out = {"tokens": n}
    lm_path = exp.lm_path
    lm = kenlm.Model(lm_path)
    out["kenlm"] = 10 ** (-sum(lm.score(" ".join(s), bos=True, eos=True) for s in sents) / n)
    cslm = os.path.join(exp.d["cslm"], "best.pt")
    if cslm_done and os.path.exists(cslm):
        from rescorer.cslm import CSLMScorer  # torch: only where it is needed
        scorer = CSLMScorer.load(cslm)
        out["cslm"] = math.exp(-float(scorer.score_sentences(sents).sum()) / n)
    return out


def _neural_weights(exp, systems: list[str]) -> dict:
    """Each run's tuned weights of the neural features (and of the LM, for scale)."""
    out = {}
    for sysname in systems:
        runs = []
        for k in range(1, exp.runs + 1):
            with open(exp.tuned_path(sysname, k)) as f:
                t = json.load(f)
            w = t["weights"]
            names = [name for name, vals in w.items() for _ in vals]
            iwp = names.index("WordPenalty0") if "WordPenalty0" in names else None
            tm = w["TranslationModel0"]
            runs.append({"RNN": tm[4] if len(tm) > 4 else None, "WP": tm[5] if len(tm) > 5 else None,
                         "RNN-inverse": tm[6] if len(tm) > 6 else None,
                         "CSLM0": w.get("CSLM0", [None])[0], "LM0": w["LM0"][0], "dev_bleu": t["dev_bleu"],
                         "iterations": t["iterations"], "seed": t["seed"],
                         "dev_bleu_per_iteration": [h["dev_bleu"] for h in t.get("history", [])],
                         "word_penalty_per_iteration": [h["weights"][iwp] for h in t.get("history", [])
                                                        if iwp is not None],
                         "l1": float(sum(abs(v) for vals in w.items() for v in vals[1]
                                         if not vals[0].startswith("UnknownWordPenalty")))})
        out[sysname] = runs
    return out


def _precision_check(exp, precision: str, sysname: str, lang: str) -> dict:
    """Test BLEU of the +RNN system, each run's fp32-tuned weights, with its table scored in fp32
    and in ``precision``; and how far the table's RNN scores moved."""
    out = {"precision": precision, "system": sysname, "tests": {}}
    for tname, t in exp.cfg.tests.items():
        refs = read_lines(t["reference"], t["lines"])
        runs = range(1, exp.runs + 1)
        exact = describe_runs([_detok(exp.output_path(tname, sysname, k), lang) for k in runs], refs)["bleu"]
        approx = describe_runs([_detok(exp.output_path(tname, sysname, k, precision), lang) for k in runs],
                               refs)["bleu"]
        f = exp.set_files(tname, t, "", "")
        # the RNN's column; with both directions, the inverse network's too (its own stage's diff)
        diffs = [("scores", "forward" if exp.cfg.rnn_both else "scored")] + (
            [("scores_inverse", "scored")] if exp.cfg.rnn_both else [])
        out["tests"][tname] = {"fp32": exact, precision: approx, "difference": [b - a for a, b in zip(exact, approx)]}
        for key, table in diffs:
            with open(exp.scored_path(f, precision, table) + ".diff.json") as fh:
                out["tests"][tname][key] = json.load(fh)
    return out


def collapses(runs: list[dict], share: float = 0.5) -> dict:
    """MERT iterations whose weights decoded the dev set below ``share`` of their run's best BLEU:
    how many runs had one, and the WordPenalty weight at those iterations and at the others.  The
    first iteration decodes with the run's start weights, not with weights MERT chose: it is not
    counted either way."""
    at, other, hit = [], [], 0
    for w in runs:
        best = max(w["dev_bleu_per_iteration"], default=0.0)
        low = [b < share * best for b in w["dev_bleu_per_iteration"]][1:]
        hit += any(low)
        for is_low, wp in zip(low, (w.get("word_penalty_per_iteration") or [])[1:]):
            (at if is_low else other).append(wp)
    return {"runs": len(runs), "runs_with_collapse": hit, "word_penalty_at_collapse": at,
            "word_penalty_median_otherwise": float(np.median(other)) if other else None}


def changed_share(a: list[list[str]], b: list[list[str]]) -> float:
    """The share of sentences translated differently by two sets of runs, run k against run k,
    averaged over the runs."""
    return float(np.mean([np.mean([x != y for x, y in zip(ra, rb)]) for ra, rb in zip(a, b)]))


def feature_steps(systems: dict[str, list[str]]) -> list[tuple[str, str, str]]:
    """The pairs of systems that differ by one added feature, as (without, with, feature), in the
    order of the systems that add it: what each feature adds on its own and on top of the others."""
    out = []
    for b, fb in systems.items():
        for a, fa in systems.items():
            extra = set(fb) - set(fa)
            if set(fa) < set(fb) and len(extra) == 1:
                out.append((a, b, extra.pop()))
    return out


def _negative(weights: dict) -> list[str]:
    """The log-probability weights (all but the penalties') below 0, as ``name[i]``."""
    groups = [(name, len(w), True) for name, w in weights.items()]
    lower, _ = default_ranges(groups)
    names = [f"{name}[{i}]" for name, w in weights.items() for i in range(len(w))]
    flat = [v for w in weights.values() for v in w]
    return [n for n, v, lo in zip(names, flat, lower) if lo == 0 and v < 0]


def _contrast(exp, bounds: str, systems: list[str], runs: int) -> dict:
    """The contrast runs (other bounds, dev set only) beside the runs of the same seed."""
    out = {"bounds": exp.bounds, "other": bounds, "systems": {}}
    for sysname in systems:
        rows = []
        for k in range(1, runs + 1):
            for b in (exp.bounds, bounds):
                with open(exp.tuned_path(sysname, k, b)) as f:
                    t = json.load(f)
                rows.append({"run": k, "bounds": b, "seed": t["seed"], "dev_bleu": t["dev_bleu"],
                             "dev_bleu_per_iteration": [h["dev_bleu"] for h in t["history"]],
                             "negative_log_prob_weights": _negative(t["weights"]),
                             "word_penalty": t["weights"].get("WordPenalty0", [None])[0]})
        out["systems"][sysname] = rows
    return out


def _release(exp) -> dict:
    """What the release holds (the files the release stage wrote), with sizes; nothing for the
    report of test sets translated with a release made elsewhere (``--release``)."""
    out = {}
    if getattr(exp, "release", None):
        return out
    for kind, d in exp.release_paths().items():
        if os.path.isdir(d):
            out[kind] = {os.path.relpath(os.path.join(root, f), exp.cfg.report):
                         round(os.path.getsize(os.path.join(root, f)) / 2**20, 2)
                         for root, _, files in os.walk(d) for f in sorted(files)}
    return out


def write_report(exp, records: list[dict]) -> dict:
    """The report of the stages ``records`` says are done: all of them after a run; while a run
    goes on (``reproduce.py --report-only``), the systems whose every tuning run is done, each test
    set with the systems that decoded it, and the list of stages still pending."""
    cfg = exp.cfg
    lang = cfg.get("system", "target-language", "fr")
    base = cfg.baseline
    done = {rec["stage"] for rec in records if not rec.get("pending")}
    tuned = [s for s in cfg.systems if all(exp.tune_stage_name(s, k) in done for k in range(1, exp.runs + 1))]
    results = {"config": cfg.path,
               "machine": describe_machine(), "systems": {n: sorted(f) for n, f in cfg.systems.items()},
               "runs": exp.runs, "bounds": exp.bounds, "cslm_mode": exp.cslm_mode,
               "cslm_standin": exp.cslm_standin if exp.cslm_mode == "nbest" else None,
               "rnn": {k: v for k, v in cfg.section("rnn").items()},
               "cslm": {k: v for k, v in cfg.section("cslm").items()},
               **({"rnn-inverse": {"direction": "p(source|target)"}} if cfg.rnn_both else {}),
               "tuning": {k: v for k, v in cfg.section("tuning").items()},
               "tests": {}, "stages": records,
               "pending": [rec["stage"] for rec in records if rec.get("pending")]}
    nets = exp.rnn_runs() + [("cslm", exp.d["cslm"])]
    for name, d in nets:
        p = os.path.join(d, "summary.json")
        if name in done and os.path.exists(p):
            with open(p) as f:
                results[name]["summary"] = json.load(f)
            cj = os.path.join(os.path.dirname(p), "config.json")
            if os.path.exists(cj):
                with open(cj) as f:
                    c = json.load(f)
                results[name]["model"] = c["model"]
                decays = c["train"].get("lr_decay", 1.0) != 1.0
                results[name]["training"] = {k: c["train"][k] for k in ("optimizer", "lr", "lr_decay", "lr_patience",
                                                                        "batch_size", "clip")
                                             if k in c["train"] and (decays or not k.startswith("lr_"))}
                results[name]["data"] = {k: v for k, v in (c.get("data") or {}).items()
                                         if isinstance(v, int) and not isinstance(v, bool)}
    histories = {}
    for name, d in nets:
        if name in done and os.path.exists(os.path.join(d, "last.pt")):  # not a network still training
            import torch  # only where it is needed
            h = torch.load(os.path.join(d, "last.pt"), map_location="cpu", weights_only=False)["trainer"]["history"]
            histories[name] = results[name]["curve"] = {
                "updates": [u for u, _ in h["valid"]], "valid_ppl": [p for _, p in h["valid"]],
                "minutes": h.get("valid_minutes")}
    weights = _neural_weights(exp, tuned)
    results["weights"] = weights
    results["dev"] = {n: {"bleu": [r["dev_bleu"] for r in runs], "mean": float(np.mean([r["dev_bleu"] for r in runs])),
                          "sd": float(np.std([r["dev_bleu"] for r in runs], ddof=1)) if len(runs) > 1 else 0.0}
                      for n, runs in weights.items()}
    for tname, t in cfg.tests.items():
        tested = [s for s in tuned if exp.test_stage_name(tname, s) in done]
        if base not in tested:
            continue
        refs = read_lines(t["reference"], t["lines"])
        outs = {s: [_detok(exp.output_path(tname, s, k), lang) for k in range(1, exp.runs + 1)] for s in tested}
        per = {}
        for s in tested:
            d = describe_runs(outs[s], refs)
            if s != base:
                tests = [paired_test(b, h, refs, "ar") for b, h in zip(outs[base], outs[s])]
                d["p_value_per_run"] = [x["p_value"] for x in tests]
                pooled = paired_test_all_runs(outs[base], outs[s], refs)
                d["p_value_all_runs"] = pooled["p_value"]
                d["ar_signature"] = pooled["signature"]
                d["changed_vs_baseline"] = changed_share(outs[base], outs[s])
            elif exp.runs > 1:  # what the optimizer alone changes: each baseline run against the next
                d["changed_between_runs"] = changed_share(outs[base][:-1], outs[base][1:])
            per[s] = d
        for s in tested:
            per[s]["delta"] = per[s]["mean"] - per[base]["mean"]
        steps = []
        for a, b, feat in feature_steps({s: cfg.systems[s] for s in tested}):
            p = per[b]["p_value_all_runs"] if a == base else paired_test_all_runs(outs[a], outs[b], refs)["p_value"]
            steps.append({"feature": feat, "without": a, "with": b, "delta": per[b]["mean"] - per[a]["mean"],
                          "delta_per_run": [y - x for x, y in zip(per[a]["bleu"], per[b]["bleu"])],
                          "p_value_all_runs": p})
        results["tests"][tname] = {"sentences": len(refs), "systems": per, "feature_steps": steps,
                                   "signature": corpus_bleu(outs[base][0], refs)[2],
                                   "perplexity": _perplexities(exp, t.get("tokenised-reference"), t["lines"],
                                                               "cslm" in done)}
    check = exp.precision_check()
    if check and all(exp.test_stage_name(t, check[1], s) in done for t in cfg.tests for s in ("fp32", check[0])):
        results["precision_check"] = _precision_check(exp, *check, lang)
    if os.path.exists(exp.correlation_path()):
        with open(exp.correlation_path()) as f:
            results["rnn_vs_table"] = json.load(f)
    contrast = exp.contrast()
    if contrast and all(exp.tune_stage_name(s, k, b) in done for b in (exp.bounds, contrast[0])
                        for s in contrast[1] for k in range(1, contrast[2] + 1)):
        results["contrast_bounds"] = _contrast(exp, *contrast)
    results["release"] = _release(exp)
    if getattr(exp, "release", None):
        results["translated_with_release"] = exp.release
    if exp.cslm_modes_system() and os.path.exists(exp.modes_path()):
        with open(exp.modes_path()) as f:
            results["cslm_modes"] = json.load(f)
    if cfg.previous:
        with open(cfg.previous) as f:
            results["previous"] = previous_run(json.load(f), cfg.get("work", "previous").strip())
    write_results(cfg.report, results, markdown, lambda r, out: plots(r, out, bool(histories)))
    return results


def previous_run(prev: dict, path: str) -> dict:
    """What a report shows of an earlier run of the experiment ([work] previous, the results.json
    at ``path``): its RNN Encoder-Decoder (settings, model, training) and each system's BLEU per
    run on the dev set and every test set, with the machine it ran on."""
    rnn = prev.get("rnn", {})
    return {"path": path, "machine": prev.get("machine"),
            "rnn": {k: v for k, v in rnn.items() if k in ("summary", "model", "training", "data") or isinstance(v, str)},
            "dev": {s: d["bleu"] for s, d in prev.get("dev", {}).items()},
            "tests": {t: {s: d["bleu"] for s, d in x["systems"].items()} for t, x in prev.get("tests", {}).items()}}


def plots(r: dict, out: str, training: bool) -> None:
    """BLEU per system (once the dev set is measured) and, with ``training``, the networks' curves."""
    if r["dev"]:
        plot(r, os.path.join(out, "results.png"))
    if training:
        plot_training(r, os.path.join(out, "networks.png"))


def summary(r: dict, report_dir: str) -> str:
    """What the command prints at the end: per test set, each system's mean BLEU, s_opt, the
    difference to the baseline and the p-value over all runs; and where the report is."""
    L = []
    for tname, t in r["tests"].items():
        parts = [f"{s} {d['mean']:.2f} ± {d['s_opt']:.2f}"
                 + (f" ({d['delta']:+.2f}, p = {_p(d['p_value_all_runs'])})" if "p_value_all_runs" in d else "")
                 for s, d in t["systems"].items()]
        L.append(f"{tname} BLEU: " + "; ".join(parts))
    what = f"interim, {len(r['pending'])} stages pending" if r["pending"] else "complete"
    L.append(f"report ({what}): {os.path.join(report_dir, 'results.md')}")
    return "\n".join(L)


def plot(results: dict, path: str) -> None:
    sets = [("dev (MERT, tokenised)", results["dev"])] + [
        (f"{n} (sacrebleu)", {s: {"bleu": d["bleu"], "mean": d["mean"], "sd": d["s_opt"]} for s, d in t["systems"].items()})
        for n, t in results["tests"].items()]
    fig, axes = plt.subplots(1, len(sets), figsize=(4.8 * len(sets), 4.2), dpi=110, squeeze=False)
    for ax, (title, per) in zip(axes[0], sets):
        names = list(per)
        x = np.arange(len(names))
        means = [per[n]["mean"] for n in names]
        sds = [per[n]["sd"] for n in names]
        ax.bar(x, means, yerr=sds, capsize=4, color=["#999999"] + ["#4c72b0"] * (len(names) - 1), alpha=0.8)
        for i, n in enumerate(names):
            ax.plot([i] * len(per[n]["bleu"]), per[n]["bleu"], "k.", ms=5)
        lo = min(min(per[n]["bleu"]) for n in names)
        hi = max(max(per[n]["bleu"]) for n in names)
        ax.set_ylim(max(0, lo - 1.0), hi + 0.6)
        ax.set_xticks(x, names, rotation=25, ha="right")
        ax.set_ylabel("BLEU")
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"mean of {results['runs']} MERT runs (bars), each run (dots), s.d. over runs (error bars)",
                 fontsize=9)
    save_figure(fig, path)


def plot_training(results: dict, path: str) -> None:
    """Validation perplexity of each network against training minutes (or updates): what the
    training budget bought."""
    nets = [(n, t) for n, t in (("rnn", "RNN Encoder–Decoder (per target symbol)"),
                                ("rnn-inverse", "inverse RNN Encoder–Decoder (per source symbol)"),
                                ("cslm", "CSLM (per word)"))
            if "curve" in results.get(n, {})]
    fig, axes = plt.subplots(1, len(nets), figsize=(5.5 * len(nets), 4), dpi=110, squeeze=False)
    for ax, (n, title) in zip(axes[0], nets):
        c, s = results[n]["curve"], results[n].get("summary", {})
        by_time = c["minutes"] and len(c["minutes"]) == len(c["valid_ppl"])
        x = c["minutes"] if by_time else c["updates"]
        ax.plot(x[1:], c["valid_ppl"][1:], "o-", ms=3, label="validation")
        if s.get("baseline_ppl"):
            ax.axhline(s["baseline_ppl"], ls="--", color="grey", lw=1, label=f"{s['baseline']} ({s['baseline_ppl']:.0f})")
        ax.set_yscale("log")
        ax.set_xlabel("training minutes" if by_time else "updates")
        ax.set_ylabel("perplexity")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    save_figure(fig, path)


def _f(v, fmt="{:.2f}") -> str:
    return "–" if v is None else fmt.format(v)


def _kv(d: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in d.items())


def _mb(mb: float) -> str:
    return f"{mb:.2f}" if mb >= 0.01 else "< 0.01"


def _t(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def _p(v) -> str:
    return "–" if v is None else (f"{v:.4f}" if v >= 1e-4 else f"{v:.1e}")


FEATURE_NAMES = {"rnn": "RNN", "cslm": "CSLM", "wp": "WP (words outside the shortlists)"}


def _and(items: list[str]) -> str:
    return " and ".join(items) if len(items) < 3 else ", ".join(items[:-1]) + " and " + items[-1]


def findings(r: dict, base: str, alpha: float = 0.05) -> list[str]:
    """What the numbers say, in sentences made from them: each system against the baseline on
    each test set (significance over all runs, beside the spread of the tuning runs and the
    paper's gain), what each feature adds alone and on top of the others, how much weight MERT
    gives the neural features, which of the table's scores the RNN's follows, and how many MERT
    runs collapsed."""
    out = []
    for tname, t in r["tests"].items():
        b = t["systems"].get(base)
        if not b:
            continue
        parts = []
        for s, d in t["systems"].items():
            if s == base or d.get("p_value_all_runs") is None:
                continue
            p, spread = d["p_value_all_runs"], max(b["s_opt"], d["s_opt"])
            paper = PAPER.get(PAPER_OF.get(frozenset(r["systems"][s]), ""))
            notes = [f"p = {_p(p)}, " + ("significant" if p < alpha else "not significant")]
            if abs(d["delta"]) <= spread:
                notes.append(f"no larger than the spread of the tuning runs, s_opt {spread:.2f}")
            if paper:
                notes.append(f"the paper: {paper[1] - PAPER['Baseline'][1]:+.2f}")
            parts.append(f"{s} {d['delta']:+.2f} ({'; '.join(notes)})")
        if parts:
            out.append(f"On {tname}, against the baseline's {b['mean']:.2f} BLEU, over all runs at p < {alpha}: "
                       + ", ".join(parts) + ".")
        steps: dict[str, list[dict]] = {}
        for x in t.get("feature_steps", []):
            steps.setdefault(x["feature"], []).append(x)
        for f, xs in steps.items():
            if len(xs) > 1:
                out.append(f"{FEATURE_NAMES.get(f, f).split(' (')[0]} adds "
                           + _and([f"{x['delta']:+.2f} to {x['without']} (p = {_p(x['p_value_all_runs'])})"
                                   for x in xs]) + ".")
        singles = {frozenset(r["systems"][s]): d["delta"] for s, d in t["systems"].items()
                   if s != base and len(r["systems"][s]) == 1 and "delta" in d}
        for s, d in t["systems"].items():
            feats = frozenset(r["systems"][s])
            if len(feats) > 1 and "delta" in d and all(frozenset({f}) in singles for f in feats):
                total = sum(singles[frozenset({f})] for f in feats)
                out.append(f"{s}: the gains of its features alone add up to {total:+.2f}; together they give "
                           f"{d['delta']:+.2f}.")
    shares: dict[str, list[float]] = {n: [] for n in ("RNN", "RNN-inverse", "CSLM0", "WP", "LM0")}
    for s, runs in r["weights"].items():
        for w in runs:
            for name in shares:
                if w.get(name) is not None and w["l1"] > 0 and not (name == "WP" and "wp" not in r["systems"][s]):
                    shares[name].append(abs(w[name]) / w["l1"])
    shares = {n: v for n, v in shares.items() if v}
    if any(n in shares for n in ("RNN", "CSLM0")):
        out.append("Share of each run's L1 norm of tuned weights that MERT gives a feature, lowest to highest over "
                   "the runs that have it: " + ", ".join(f"{n} {min(v):.1%} to {max(v):.1%}" for n, v in shares.items())
                   + ".")
    if "rnn_vs_table" in r:
        cols = r["rnn_vs_table"]["columns"]
        top = max(cols, key=lambda c: abs(cols[c]["spearman"]))
        x, direct = cols[top], cols.get("p(target|source)")
        out.append(f"The RNN's log p(target|source) follows the table's {top} most (Spearman {x['spearman']:.2f} over "
                   f"all pairs, {_f(x['spearman_within_source'])} within a source's targets)"
                   + (f"; the table's p(target|source) less ({direct['spearman']:.2f})" if direct and top !=
                      "p(target|source)" else "") + ".")
        fit = r["rnn_vs_table"].get("linear_fit")
        if fit:
            out.append(f"A weighting of the table's four scores and the target length explains {fit['within_source']:.0%} "
                       "of the RNN score's variance among a source's targets (R², least squares; lex(target|source) "
                       f"alone {fit['lex_within_source']:.0%}): what the log-linear model could already say.")
    col = {s: collapses(runs) for s, runs in r["weights"].items()}
    if col:
        hit = [f"{s} {c['runs_with_collapse']} of {c['runs']}" for s, c in col.items() if c["runs_with_collapse"]]
        out.append("MERT runs with a collapse (an iteration after the first decoding the dev set below half of its "
                   "run's best BLEU): " + (_and(hit) if hit else "none") + ".")
    return out


def baseline_of(r: dict) -> str:
    """The system without a neural feature."""
    return next(s for s, feats in r["systems"].items() if not feats)


def _md_header(r: dict) -> list[str]:
    L = [f"# Table 1 of Cho et al. (2014), reproduced: {', '.join(r['systems'])}", "",
         f"Generated by `python experiments/reproduce.py --config {r['config']}`; do not edit by hand.", ""]
    if r.get("translated_with_release"):
        L += [f"Test sets translated with the release in `{r['translated_with_release']}` alone (its networks and "
              "every run's tuned weights; nothing trained or tuned here): dev BLEU and weights are the release's.", ""]
    if "rnn-inverse" in r:
        L += ["RNN, in every system that has it: two columns, the RNN Encoder–Decoder's log p(target|source) "
              "(the paper's feature) and a second network's, trained the other way with the same options, "
              "log p(source|target) (`[rnn] directions = both`); each has its own tuned weight.", ""]
    m = r["machine"]
    L += [f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, GPU: {m['gpu'] or 'none'}; "
          f"Python {m['python']}, torch {m['torch']}.", ""]
    if r["pending"]:
        started = [rec["stage"] for rec in r["stages"] if rec.get("started")]
        missing = [s for s in r["systems"] if s not in r["dev"]]
        L += [f"**Interim report** (`--report-only`), written while the run goes on: {len(r['pending'])} of "
              f"{len(r['stages'])} stages are not done yet"
              + (f" ({', '.join(started)} begun)" if started else "")
              + (f"; not yet tuned and tested: {', '.join(missing)}" if missing else "")
              + ". Every number below comes from finished stages and stays as it is in the final report.", ""]
    return L


def _md_test(r: dict, tname: str, t: dict, base: str) -> list[str]:
    """A test set: BLEU of every system, what it changes, what each feature adds, perplexities."""
    rows = []
    for s, d in t["systems"].items():
        dev = r["dev"][s]
        rows.append([s, f"{d['mean']:.2f}", f"{d['s_opt']:.2f}", f"{d['s_sel']:.2f}",
                     " / ".join(f"{b:.2f}" for b in d["bleu"]), "" if s == base else f"{d['delta']:+.2f}",
                     " / ".join(_p(p) for p in d.get("p_value_per_run", [])),
                     _p(d.get("p_value_all_runs")) if s != base else "", f"{dev['mean']:.2f} ± {dev['sd']:.2f}"])
    L = [f"## Test set {tname} ({t['sentences']} sentences)", "",
         f"BLEU: `{t['signature']}` on detruecased, detokenised output. "
         f"{r['runs']} MERT runs per system; p-values from sacrebleu's paired approximate randomization "
         "(10,000 trials) against the baseline: per run (run k against baseline run k) and over all runs "
         "together (MultEval's view). s_opt: s.d. over the tuning runs; s_sel: bootstrap s.d. within a "
         "run (1,000 resamples), averaged over the runs.", ""]
    L += markdown_table(["system", "BLEU mean", "s_opt", "s_sel", "runs", "Δ baseline", "p per run", "p all runs",
                         "dev BLEU (MERT)"], rows)
    changed = {s: d["changed_vs_baseline"] for s, d in t["systems"].items() if "changed_vs_baseline" in d}
    if changed:
        noise = t["systems"][base].get("changed_between_runs")
        L += ["", "Sentences translated differently from the baseline (run k against baseline run k, averaged "
                  "over the runs): " + ", ".join(f"{s} {v:.1%}" for s, v in changed.items())
              + ("" if noise is None else f"; the baseline's own runs differ from each other on {noise:.1%} "
                 "(what the optimizer alone changes)") + "."]
    if t.get("feature_steps"):
        L += ["", "What each feature adds, alone and on top of the others (the paper finds the RNN's and the "
                  "CSLM's gains add up): the difference of mean BLEU between the systems with and without it, "
                  "per run (run k against run k), and the p-value over all runs together.", ""]
        L += markdown_table(["feature", "added to", "gives", "Δ BLEU", "Δ per run", "p all runs"],
                            [[FEATURE_NAMES.get(x["feature"], x["feature"]), x["without"], x["with"],
                              f"{x['delta']:+.2f}", " / ".join(f"{d:+.2f}" for d in x["delta_per_run"]),
                              _p(x["p_value_all_runs"])] for x in t["feature_steps"]])
    if t["perplexity"]:
        pp = t["perplexity"]
        L += ["", f"Perplexity of the tokenised reference ({pp['tokens']:,} tokens, every word and `</s>`): "
                  f"KenLM {_f(pp.get('kenlm'), '{:.1f}')}, CSLM {_f(pp.get('cslm'), '{:.1f}')} (the CSLM "
                  "spreads the probability of its [UNK] class over the words outside its shortlist; KenLM "
                  "gives every unknown word its <unk> probability)."]
    return L + [""]


def _md_paper(r: dict) -> list[str]:
    rows = []
    for s in r["dev"]:
        paper = PAPER.get(PAPER_OF.get(frozenset(r["systems"][s]), ""), (None, None))
        rows.append([s, _f(paper[0]), _f(paper[1]), f"{r['dev'][s]['mean']:.2f}"]
                    + [_f(t["systems"].get(s, {}).get("mean")) for t in r["tests"].values()])
    L = ["## The paper's Table 1 beside it", ""]
    L += markdown_table(["system", "paper dev", "paper test", "here: dev (MERT)"] + [f"here: {n}" for n in r["tests"]],
                        rows)
    return L + ["", "The paper trained on 348M words of WMT'14 news, Europarl, UN and crawled text and tested on "
                    "newstest2014; here the translation model and the RNN learn from 210k sentence pairs of mostly "
                    "Canadian parliamentary text (Hansard) and are tested on news, with a language model from the "
                    "same French text: absolute BLEU is much lower, and the comparison between systems is what "
                    "this reproduces. Dev BLEU is MERT's own, on tokenised text.", ""]


def _md_weights(r: dict) -> list[str]:
    """The tuned weights of every run, MERT's path through its iterations, its collapses."""
    rows = []
    inverse = any(w.get("RNN-inverse") is not None for runs in r["weights"].values() for w in runs)
    for s, runs in r["weights"].items():
        for k, w in enumerate(runs, 1):
            wp = _f(w["WP"], "{:.4f}") if "wp" in r["systems"][s] or w["WP"] is None else "off"
            rows.append([s, k, w["seed"], _f(w["RNN"], "{:.4f}")]
                        + ([_f(w.get("RNN-inverse"), "{:.4f}")] if inverse else [])
                        + [wp, _f(w["CSLM0"], "{:.4f}"), f"{w['LM0']:.4f}",
                           f"{w['l1']:.3f}", _f(w["iterations"], "{}"), f"{w['dev_bleu']:.2f}"])
    L = ["## Is each neural feature used? Tuned weights per run", "",
         "Weights are scale-free (the decoder's ranking does not change when all are multiplied by a "
         "constant): each is shown with the L1 norm of all tuned weights of its run. WP off: the column is in "
         "the table, with weight 0, not tuned.", ""]
    L += markdown_table(["system", "run", "seed", "RNN"] + (["RNN inverse"] if inverse else [])
                        + ["WP", "CSLM0", "LM0", "L1 norm", "MERT iterations", "dev BLEU"], rows)
    L += ["", "### MERT's path: dev BLEU of each iteration's weights", "",
          "Each iteration decodes the dev set with the weights the previous one optimised on the pool of "
          "n-best lists so far; a run keeps the weights of its best iteration. A collapse (weights that rank "
          "the pool well but decode badly) is followed by iterations that add the bad translations to the "
          "pool; with a fixed number of iterations a run may end before it has recovered.", ""]
    L += markdown_table(["system", "run", "dev BLEU per iteration", "best"],
                        [[s, k, " → ".join(f"{b:.2f}" for b in (w.get("dev_bleu_per_iteration") or [])),
                          f"{w['dev_bleu']:.2f}"] for s, runs in r["weights"].items() for k, w in enumerate(runs, 1)])
    col = {s: collapses(runs) for s, runs in r["weights"].items()}
    if not any(c["runs_with_collapse"] for c in col.values()):
        return L
    L += ["", "Collapses (an iteration's weights decoding the dev set below half of its run's best BLEU; "
              "the first iteration, which decodes with the start weights, is left out), per system, with "
              "the WordPenalty weight at those iterations and its median at the others:", ""]
    L += markdown_table(["system", "runs with a collapse", "WordPenalty at the collapses",
                         "median WordPenalty otherwise"],
                        [[s, f"{c['runs_with_collapse']} of {c['runs']}",
                          ", ".join(f"{x:.1f}" for x in c["word_penalty_at_collapse"]) or "–",
                          _f(c["word_penalty_median_otherwise"])] for s, c in col.items()])
    if r["cslm_mode"] == "nbest":
        L += ["", "With the CSLM by n-best rescoring, MERT optimises on the pool with the CSLM0 column, a sum "
                  "of log-probabilities that lowers long hypotheses, while the search that makes the next "
                  "n-best lists does not see the CSLM: a more negative word penalty that offsets the CSLM on "
                  "the pool favours long, poor hypotheses in the search. A run whose n-best lists stop growing "
                  "in such a state ends there and keeps its best iteration so far, which may be its start."]
        L += ["", f"Here the search decodes with CSLM0's weight added to {r['cslm_standin']}'s: the n-gram LM "
                  "stands in for the CSLM, so the word penalty MERT chooses applies to a search that also "
                  "sees a language model of that weight." if r.get("cslm_standin") else
              "Here the search decodes without a stand-in for the CSLM (its weight is left out)."]
        with_cslm = [c for s, c in col.items() if "cslm" in r["systems"][s]]
        hit, runs = sum(c["runs_with_collapse"] for c in with_cslm), sum(c["runs"] for c in with_cslm)
        if r.get("cslm_standin") and hit:
            L[-1] += (f" It does not prevent every collapse: {hit} of the {runs} runs of the systems with "
                      "the CSLM had one (see the WordPenalty weights above).")
    return L


def _md_contrast_bounds(cb: dict) -> list[str]:
    title = {"moses": "no bounds (Moses's `mert`)", "positive": "log-probability weights >= 0"}
    rows = []
    for s, xs in cb["systems"].items():
        for x in xs:
            neg = x["negative_log_prob_weights"]
            rows.append([s, x["run"], x["bounds"], " → ".join(f"{b:.2f}" for b in x["dev_bleu_per_iteration"]),
                         f"{x['dev_bleu']:.2f}", f"{len(neg)}{': ' + ', '.join(neg) if neg else ''}",
                         _f(x["word_penalty"], "{:.3f}")])
    L = ["", "### What the bounds change, on the dev set", "",
         f"The runs below were tuned a second time with {title[cb['other']]} instead of {title[cb['bounds']]}, "
         "from the same start and seed; only the dev set is decoded with their weights (the test sets are "
         f"decoded with the runs tuned with {title[cb['bounds']]} only).", ""]
    return L + markdown_table(["system", "run", "bounds", "dev BLEU per iteration", "best",
                               "log-probability weights < 0", "WordPenalty"], rows)


def _md_rnn_vs_table(c: dict) -> list[str]:
    L = ["", "## Does the RNN score repeat the phrase table's?", "",
         f"On the dev set's scored table ({c['pairs']:,} phrase pairs, {c['sources']:,} source phrases): the "
         "correlation of the RNN's log p(target|source) with the log of each of the table's four scores (as the "
         "decoder reads them), over all pairs and within each source phrase's candidate targets "
         f"(Spearman, averaged over the {c['sources_with_enough_targets']:,} sources with at least "
         f"{c['min_targets']} targets). The paper's point is that the RNN, trained on the unique pairs "
         "without their counts, scores the linguistic regularity of a pair rather than its frequency: a "
         "correlation near 1 would mean the feature only repeats the table.", ""]
    L += markdown_table(["table score", "Pearson", "Spearman", "Spearman within a source's targets"],
                        [[name.replace("|", "\\|"), f"{x['pearson']:.3f}", f"{x['spearman']:.3f}",
                          _f(x["spearman_within_source"], "{:.3f}")] for name, x in c["columns"].items()])
    fit = c.get("linear_fit")
    if fit:
        L += ["", "How much of the RNN score a weighting of features the decoder already has could express: the R² "
              "of a least-squares fit of it on the four scores and the target phrase's length (the word penalty's "
              f"count), within each source's targets (each variable minus its source's mean) {fit['within_source']:.3f}, "
              f"with lex(target\\|source) alone {fit['lex_within_source']:.3f}; over all pairs (with a constant and "
              f"the source's length) {fit['all_pairs']:.3f}. What is left, 1 − R², is all the feature can add."]
    return L


def _md_precision(pc: dict) -> list[str]:
    q = pc["precision"]
    L = ["", f"## Scoring in {q} instead of fp32: does {pc['system']} translate differently?", "",
         f"The test sets' tables scored again with `rescorer score --precision {q}` and decoded with the "
         f"weights each run tuned on the fp32 table (no retuning). Score differences are those the "
         "decoder sees (Moses's max(ln x, -100) of the column).", ""]
    inverse = any("scores_inverse" in t for t in pc["tests"].values())

    def diff(d: dict) -> str:
        return f"{d['max_abs_diff']:.3f} / {d['mean_abs_diff']:.4f} / {d['p99_abs_diff']:.3f}"
    rows = [[tname, f"{t['scores']['pairs']:,}", diff(t["scores"])]
            + ([diff(t["scores_inverse"])] if inverse else [])
            + [" / ".join(f"{b:.2f}" for b in t["fp32"]), " / ".join(f"{b:.2f}" for b in t[q]),
               " / ".join(f"{d:+.2f}" for d in t["difference"])] for tname, t in pc["tests"].items()]
    return L + markdown_table(["test set", "pairs", "max / mean / 99th pct. \\|Δ log p\\|"]
                              + (["the inverse network's"] if inverse else [])
                              + ["BLEU fp32 per run", f"BLEU {q} per run", "difference per run"], rows)


def _md_cslm_modes(r: dict) -> list[str]:
    cm = r["cslm_modes"]
    mode_name = "n-best rescoring" if r["cslm_mode"] == "nbest" else "the search"
    L = ["", "## The CSLM by n-best rescoring or in the search", "",
         f"The weights of {cm['system']}'s first tuning run (tuned with the CSLM in "
         f"{mode_name}) decode the dev set "
         f"({cm['sentences']} sentences) both ways; BLEU as MERT computes it (tokenised).", ""]
    rows = [[title, f"{cm[mode]['dev_bleu']:.2f}", _t(cm[mode]["decode_seconds"]), _t(cm[mode]["load_seconds"])]
            for mode, title in (("nbest", f"re-ranks the decoder's {cm['nbest_size']}-best lists"),
                                ("search", "is a feature of the search"))]
    return L + markdown_table(["CSLM", "dev BLEU", "decoding", "loading"], rows) + [
        "", f"The systems above use the CSLM by {mode_name}."]


def _md_release(rel: dict) -> list[str]:
    L = ["", "## Released with this report", "",
         "To translate another test set without retraining or retuning: score the system's phrase table "
         "(or one filtered to the test set, as Moses's `filter-model-given-input.pl` makes) with "
         "`rescorer score --model models/rnn.pt --unk-count`"
         + (" and then `rescorer score --model models/rnn-inverse.pt` on its output (the inverse network's "
            "column)" if any("rnn-inverse" in p for p in rel.get("models") or {}) else "")
         + ", point a run's ini at it with "
         "`rescorer ini set-table` and at the reordering table and LM by hand, and decode with "
         "`rescorer decode` (which reads only the table lines its input needs) or Moses. "
         "`reproduce.py --release DIR --add-test NAME SRC REF [PT RT]` does all of it from the release alone; "
         "in the work directory of the run, `reproduce.py --add-test` does.", ""]
    rows = [[f"[{path}]({path})", _mb(mb)] for path, mb in sorted((rel.get("models") or {}).items())]
    inis: dict[str, list[str]] = {}
    for path in sorted((rel.get("moses") or {})):
        inis.setdefault(os.path.dirname(path), []).append(path)
    rows += [[f"{d}/: " + ", ".join(f"[{os.path.basename(p)}]({p})" for p in paths),
              _mb(sum(rel["moses"][p] for p in paths))] for d, paths in inis.items()]
    return L + markdown_table(["files", "MB"], rows)


def _network_line(x: dict, per: str) -> str:
    """A trained network in a sentence: its size, training, data, validation perplexity (``per``:
    what it is counted per) and config keys."""
    s = x["summary"]
    return (f"{_kv(x.get('model', {}))}; {_kv(x.get('training', {}))}; data: "
            f"{_kv(x.get('data', {}))}. {s['updates']:,} updates in {s['minutes']:.1f} min ({s['stop']}); "
            f"best validation perplexity {s['best_valid_ppl']:.2f} per {per} "
            f"against the {s['baseline']} baseline's {s['baseline_ppl']:.1f}. Config: "
            + ", ".join(f"{k} = {v}" for k, v in x.items() if isinstance(v, str)) + ".")


def _md_previous(r: dict) -> list[str]:
    """This run beside an earlier one of the experiment ([work] previous): the same systems with
    another RNN Encoder-Decoder. Each run's mean BLEU and the gain over its own baseline."""
    prev, base = r["previous"], baseline_of(r)
    L = ["", "## Beside the previous network", "",
         f"The previous run of this experiment (`{prev['path']}`, on {(prev.get('machine') or {}).get('cpu', '?')}) "
         "had the same kind of systems with another RNN Encoder-Decoder"
         + (f": {_network_line(prev['rnn'], 'target symbol')}" if "summary" in prev["rnn"] else ".")
         + (f" This run's: {_network_line(r['rnn'], 'target symbol')}" if "summary" in r["rnn"] else ""), ""]
    sets = [("dev (MERT, tokenised)", r["dev"], prev["dev"])] + [
        (t, x["systems"], prev["tests"].get(t, {})) for t, x in r["tests"].items()]
    for title, now, then in sets:
        mean_now = {s: d["mean"] for s, d in now.items()}
        mean_then = {s: float(np.mean(b)) for s, b in then.items()}
        rows = []
        for s in r["systems"]:
            if s not in mean_now and s not in mean_then:
                continue
            cells = [s]
            for means in (mean_then, mean_now):
                if s not in means:
                    cells.append("–")
                    continue
                gain = (f" ({means[s] - means[base]:+.2f})" if s != base and base in means else "")
                cells.append(f"{means[s]:.2f}{gain}")
            cells.append(f"{mean_now[s] - mean_then[s]:+.2f}" if s in mean_now and s in mean_then else "–")
            rows.append(cells)
        L += [f"{title}:", ""] + markdown_table(
            ["system", "previous network: mean BLEU (gain over its baseline)", "this run", "difference"], rows) + [""]
    return L


def _md_networks(r: dict) -> list[str]:
    L = ["", "## The networks", ""]
    per = {"rnn": "target symbol", "rnn-inverse": "source symbol", "cslm": "word over the shortlist ([UNK] one class)"}
    for name, title in (("rnn", "RNN Encoder–Decoder"),
                        ("rnn-inverse", "RNN Encoder–Decoder trained the other way, p(source|target)"),
                        ("cslm", "CSLM")):
        x = r.get(name, {})
        if "summary" not in x:
            continue
        L.append(f"- **{title}**: " + _network_line(x, per[name]))
    if any("curve" in r.get(n, {}) for n in per):
        L += ["", "![validation perplexity against training time](networks.png)"]
    L += ["", f"MERT: {_kv(r['tuning'])}; bounds: "
              + ("none, as Moses's `mert` (whose `--positive` list is empty unless given)" if r["bounds"] == "moses"
                 else "log-probability weights and Distortion >= 0, penalties free")
              + (". Each run starts from the system's weights, each tunable one multiplied by a random factor "
                 "in [1/2, 2] drawn from the run's seed, so that the runs measure the optimizer's variance"
                 if r["tuning"].get("start", "perturbed") == "perturbed" else
                 ". Every run starts from the system's weights")
              + ". CSLM used by " + (("n-best rescoring (the decoder searches without it"
                                      + (f", with CSLM0's weight added to {r['cslm_standin']}'s" if r.get("cslm_standin") else "")
                                      + "; each n-best list gets CSLM0 and is re-ranked)")
                                     if r["cslm_mode"] == "nbest" else "the decoder during the search") + "."]
    return L


def _md_stages(r: dict) -> list[str]:
    rows = []
    for rec in r["stages"]:
        if rec.get("pending"):
            rows.append([rec["stage"], "begun, not done" if rec.get("started") else "pending", "", ""])
            continue
        extra = ", ".join(f"{k}={v}" for k, v in rec.items()
                          if k not in ("stage", "seconds", "peak_memory_mb", "skipped"))
        mem = rec.get("peak_memory_mb")
        rows.append([rec["stage"], _t(rec.get("seconds", 0)), "–" if mem is None else f"{mem:,} MB", extra])
    total = sum(rec.get("seconds", 0) for rec in r["stages"])
    return (["", "## What each stage cost", ""] + markdown_table(["stage", "time", "peak memory", "notes"], rows)
            + ["", f"{'Stages done so far' if r['pending'] else 'All stages'}: {total / 3600:.1f} hours (each stage "
                   "as first run; a stage skipped on a later invocation keeps the time it took when it ran; a stage "
                   "interrupted and resumed counts the time of every run of it, interrupted_runs_seconds of it "
                   "before the last resume).", ""])


def markdown(r: dict) -> str:
    """The report, from the results structure alone (what results.json holds): each section
    rendered by its own function."""
    base = baseline_of(r)
    L = _md_header(r)
    for tname, t in r["tests"].items():
        L += _md_test(r, tname, t, base)
    L += (["![BLEU per system](results.png)", ""] if r["dev"] else [])
    found = findings(r, base)
    if found:
        L += ["## What this run shows", ""] + [f"- {x}" for x in found] + [""]
    L += _md_paper(r) + _md_weights(r)
    if "contrast_bounds" in r:
        L += _md_contrast_bounds(r["contrast_bounds"])
    if "rnn_vs_table" in r:
        L += _md_rnn_vs_table(r["rnn_vs_table"])
    if "precision_check" in r:
        L += _md_precision(r["precision_check"])
    if "cslm_modes" in r:
        L += _md_cslm_modes(r)
    if r.get("release"):
        L += _md_release(r["release"])
    if r.get("previous"):
        L += _md_previous(r)
    return "\n".join(L + _md_networks(r) + _md_stages(r))
