"""The report of experiments/rnn_gain.py: results.md, results.json, gain-vs-updates.png and
gain-vs-perplexity.png, written from the study's outputs only (the tuning sets decoded with each
MERT run's weights, the tuning results, the networks' checkpoints).

BLEU is sacrebleu's, on the detruecased, detokenised output of each run against the raw
reference of the tuning set, with its signature.  A point's gain is its mean over the runs
minus the baseline's; its p-value is sacrebleu's approximate randomization over all runs
together (run k paired with baseline run k), as MultEval reports it; s_opt is the standard
deviation over the tuning runs.  The BLEU is measured on the set the weights were tuned on:
it says what the feature lets MERT reach, and it is what the best setting is chosen by.
"""
from __future__ import annotations

import json
import os
import time

import numpy as np

from moses_integration.evaluate import corpus_bleu, describe_runs, paired_test_all_runs
from rescorer.machine import describe as describe_machine
from rescorer.plots import plt, save_figure

from experiments.common import ROOT, markdown_table, read_config, read_lines, write_results
from experiments.table1_config import slug
from experiments.rnn_gain_points import BASELINE, budget_text, parse_budget, point_name, same_settings
from experiments.table1_report import _detok, _p, collapses

DIRECTIONS = {False: "p(target\\|source)", True: "p(source\\|target)"}  # escaped for a Markdown table


def network_size(study, net: str) -> dict:
    """Hidden and maxout units of a network: its keys, else `rescorer train`'s defaults."""
    return {k: study.train_option(net, k) for k in ("hidden", "maxout-units")}


def training_path(study, net: str) -> str:
    """How a network was trained, beyond its table, size and direction: its options that differ
    from [rnn]'s ("as [rnn]" when none do), so that two networks are compared only on one path."""
    base = dict(study.cp["rnn"]) if "rnn" in study.cp else {}
    skip = {"table", "updates", "shortlist", "hidden", "maxout-units", "inverse"}
    diff = [f"--{k} {v}" for k, v in study.networks[net]["options"].items() if k not in skip and base.get(k) != v]
    return " ".join(diff) or "as [rnn]"


def _weights_share(tuned: dict, column: int) -> float | None:
    """|weight of the table's column| / L1 norm of the run's weights (the unknown-word penalty,
    fixed, left out)."""
    tm = tuned["TranslationModel0"]
    if len(tm) <= column:
        return None
    l1 = sum(abs(v) for name, vals in tuned.items() for v in vals if not name.startswith("UnknownWordPenalty"))
    return abs(tm[column]) / l1 if l1 > 0 else None


def _checkpoint_info(study, net: str, updates: int) -> dict | None:
    p = study.checkpoint(net, updates)[:-3] + ".json"
    if not os.path.exists(p):
        return None
    with open(p) as f:
        return json.load(f)


def _runs(exp, sysname: str) -> list[dict]:
    out = []
    for k in range(1, exp.runs + 1):
        with open(exp.tuned_path(sysname, k)) as f:
            out.append(json.load(f))
    return out


def _describe(study, arm: str, exp, sysname: str, refs: list[str]) -> tuple[dict, list[list[str]]]:
    outs = [_detok(exp.output_path("dev", sysname, k), study.lang) for k in range(1, exp.runs + 1)]
    d = describe_runs(outs, refs)
    tuned = _runs(exp, sysname)
    d["mert_dev_bleu"] = [t["dev_bleu"] for t in tuned]
    d["iterations"] = [t["iterations"] for t in tuned]
    d["collapses"] = collapses([{"dev_bleu_per_iteration": [h["dev_bleu"] for h in t.get("history", [])]}
                                for t in tuned])["runs_with_collapse"]
    d["rnn_share"] = [_weights_share(t["weights"], 4) for t in tuned]
    if len(tuned[0]["weights"]["TranslationModel0"]) > 6:
        d["inverse_share"] = [_weights_share(t["weights"], 6) for t in tuned]
    return d, outs


def _point_meta(study, point: str) -> dict:
    nets = study.point_networks(point)
    (net, m), inverse = nets[0], nets[1:]
    info = _checkpoint_info(study, net, m) or {}
    out = {"kind": "pair" if inverse else "network", "network": net, "table": study.networks[net]["table"],
           **network_size(study, net), "path": training_path(study, net), "budget_updates": m,
           "valid_ppl": info.get("best_valid_ppl"),
           "trained_minutes": info.get("minutes"), "updates": info.get("updates")}
    if inverse:
        out["networks"] = [point_name(n, u) for n, u in nets]
        out["inverse_valid_ppl"] = (_checkpoint_info(study, *inverse[0]) or {}).get("best_valid_ppl")
    else:
        out["stop_reason"] = info.get("stop")
    return out


def _arm(study, arm: str, done: set) -> dict | None:
    exp = study.exps[arm]
    s = study.sets[arm]
    pre = f"{slug(arm)}."

    def finished(sysname: str) -> bool:
        return (all(pre + exp.tune_stage_name(sysname, k) in done for k in range(1, exp.runs + 1))
                and pre + exp.test_stage_name("dev", sysname) in done)
    if not finished(BASELINE):
        return None
    refs = read_lines(s["raw-reference"], s["lines"])
    base, base_outs = _describe(study, arm, exp, BASELINE, refs)
    out = {"system": s["system"], "sentences": len(refs), "baseline": base,
           "signature": corpus_bleu(base_outs[0], refs)[2], "settings": study.baseline_settings(arm), "points": {}}
    files = exp.set_files("dev", exp.cfg.dev, "", "")
    for point in s["points"]:
        if not finished(point):
            continue
        d, outs = _describe(study, arm, exp, point, refs)
        d.update(_point_meta(study, point))
        d["delta"] = d["mean"] - base["mean"]
        d["mert_delta"] = float(np.mean(d["mert_dev_bleu"]) - np.mean(base["mert_dev_bleu"]))
        d["baseline_mean"] = base["mean"]
        d["settings"] = study.point_settings(arm, point)
        d["delta_per_run"] = [b - a for a, b in zip(base["bleu"], d["bleu"])]
        pooled = paired_test_all_runs(base_outs, outs, refs)
        d["p_value_all_runs"], d["ar_signature"] = pooled["p_value"], pooled["signature"]
        cp = study.correlation_path(files, point)
        if pre + f"rnn-vs-table-{slug(point)}" in done and os.path.exists(cp):
            with open(cp) as f:
                c = json.load(f)
            d["spearman"] = {name: v["spearman"] for name, v in c["columns"].items()}
            if "linear_fit" in c:
                d["r2_within_source"] = c["linear_fit"]["within_source"]
        out["points"][point] = d
    if s["test"]:
        name = s["test"]["name"]
        tested = [x for x in [BASELINE] + s["points"] if pre + exp.test_stage_name(name, x) in done]
        if BASELINE in tested:
            trefs = read_lines(s["test"]["reference"], s["test"]["lines"])
            touts = {x: [_detok(exp.output_path(name, x, k), study.lang) for k in range(1, exp.runs + 1)]
                     for x in tested}
            per = {}
            for x in tested:
                per[x] = describe_runs(touts[x], trefs)
                if x != BASELINE:
                    per[x]["delta"] = per[x]["mean"] - per[BASELINE]["mean"]
                    per[x]["p_value_all_runs"] = paired_test_all_runs(touts[BASELINE], touts[x], trefs)["p_value"]
            out["test"] = {"name": name, "sentences": len(trefs), "systems": per,
                           "signature": corpus_bleu(touts[BASELINE][0], trefs)[2]}
    return out


def carry_over(r: dict, previous: dict, study) -> None:
    """Keep what an earlier report measured and this run's work directory no longer holds (a new
    checkout has none of it): a tuning set's baseline when its settings are the same, and each
    point whose settings are the same (the set, the system, the tuning, its networks' options and
    budget), marked with the date of the report it comes from. A point keeps the gain and p-value
    it was measured with, against the baseline it names; a point measured now is never replaced."""
    when = previous.get("generated", "an earlier report")
    for arm, pa in previous.get("sets", {}).items():
        if arm not in study.sets:
            continue
        cur = r["sets"].get(arm)
        if cur is None:
            if not same_settings(pa.get("settings"), study.baseline_settings(arm)):
                continue
            cur = r["sets"][arm] = {**pa, "points": {}, "carried_from": pa.get("carried_from", when)}
        for p, d in pa.get("points", {}).items():
            if p in cur["points"] or p not in study.sets[arm]["points"]:
                continue
            if same_settings(d.get("settings"), study.point_settings(arm, p)):  # its networks' options too
                cur["points"][p] = {"path": training_path(study, study.point_networks(p)[0][0]), **d,
                                    "carried_from": d.get("carried_from", when)}
        order = study.sets[arm]["points"]
        cur["points"] = {p: cur["points"][p] for p in order if p in cur["points"]}
    r["sets"] = {a: r["sets"][a] for a in study.sets if a in r["sets"]}
    for net, pn in previous.get("networks", {}).items():
        n = r["networks"].get(net)
        if n is None or not same_settings({k: v for k, v in pn.get("options", {}).items() if k != "updates"},
                                  {k: v for k, v in n["options"].items() if k != "updates"}):
            continue
        for m, c in pn.get("checkpoints", {}).items():
            if c and n["checkpoints"].get(m) is None and parse_budget(m) in study.networks[net]["updates"]:
                n["checkpoints"][m] = {**c, "carried_from": c.get("carried_from", when)}
        n["checkpoints"] = dict(sorted(n["checkpoints"].items(), key=lambda x: parse_budget(x[0])))


def table1_reference(study, arm: str) -> dict | None:
    """The dev BLEU of a Table 1 report's Baseline and +RNN when it was tuned on this tuning set
    with this study's system and MERT settings (``table1-report =``): its network is one more
    point of the system table's curve, measured with that report's runs. That BLEU is MERT's own
    (tokenised, the best iteration's), to be compared with the points' ``mert_delta``."""
    path = study.sets[arm].get("table1_report")
    if not path:
        return None
    with open(path) as f:
        t = json.load(f)
    where = f"{study.path}: [tuning {arm}] table1-report = {os.path.relpath(path, ROOT)}"
    cfg = read_config(t["config"] if os.path.isabs(t["config"]) else os.path.join(ROOT, t["config"]))
    mine = study.cp[f"tuning {arm}"]
    same = {"source": mine.get("source"), "reference": mine.get("reference"), "lines": mine.get("lines")}
    theirs = {k: cfg.get("dev", k, fallback=None) for k in same}
    keys = ("nbest", "max-iter", "restarts", "start", "bounds", "stack-size", "pop-limit")
    differ = [f"[dev] {k}" for k in same if (same[k] or "").strip() != (theirs[k] or "").strip()]
    differ += [f"[tuning] {k}" for k in keys if str(t["tuning"].get(k)) != str(study.cp["tuning"].get(k))]
    differ += [f"[system] {k}" for k in ("ini",) if cfg.get("system", k, fallback=None) != study.cp.get("system", k)]
    if study.sets[arm]["system"] != "system" or differ:
        raise ValueError(f"{where}: that run was not tuned like this set ({', '.join(differ) or 'system'} differ)")
    s = t["rnn"]["summary"]
    base, rnn = t["dev"]["Baseline"], t["dev"]["+RNN"]
    return {"report": os.path.relpath(path, ROOT), "runs": len(base["bleu"]), "baseline": base["bleu"],
            "rnn": rnn["bleu"], "baseline_mean": base["mean"], "mean": rnn["mean"], "delta": rnn["mean"] - base["mean"],
            "table": "system", "hidden": int(t["rnn"]["model"]["hidden"]),
            "maxout-units": int(t["rnn"]["model"]["maxout_units"]), "budget_updates": s["updates"],
            "updates": s["updates"], "trained_minutes": s["minutes"], "valid_ppl": s["best_valid_ppl"]}


def _slope(points: list[dict]) -> float | None:
    """Least-squares change of the gain per doubling of the training updates."""
    if len(points) < 2:
        return None
    x = np.log2([p["budget_updates"] for p in points])
    y = np.array([p["delta"] for p in points])
    return float(np.polyfit(x, y, 1)[0])


def _curves(arm: dict) -> dict[str, list[dict]]:
    """The points of each network on a tuning set, by budget."""
    out: dict[str, list[dict]] = {}
    for p in arm["points"].values():
        if p["kind"] == "network":
            out.setdefault(p["network"], []).append(p)
    return {n: sorted(ps, key=lambda p: p["budget_updates"]) for n, ps in out.items()}


def _paired_effect(curves: dict, nets: dict, differ: str, same: tuple[str, ...]) -> list[dict]:
    """For networks that differ in ``differ`` only (the same ``same``): the gain of one minus the
    gain of the other at each budget both have."""
    out = []
    names = list(curves)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            pa, pb = curves[a][0], curves[b][0]
            if pa[differ] == pb[differ] or any(pa.get(k) != pb.get(k) for k in same):
                continue
            at_a = {p["budget_updates"]: p for p in curves[a]}
            common = [(at_a[p["budget_updates"]], p) for p in curves[b] if p["budget_updates"] in at_a]
            if common:
                out.append({"a": a, "b": b, "differ": differ, "values": (pa[differ], pb[differ]),
                            "budgets": [x["budget_updates"] for x, _ in common],
                            "difference": float(np.mean([y["delta"] - x["delta"] for x, y in common]))})
    return out


def findings(r: dict, alpha: float = 0.05) -> list[str]:
    """What the numbers say, in sentences made from them."""
    out = []
    effects = []
    for arm, a in r["sets"].items():
        pts = a["points"]
        b = a["baseline"]
        if not pts:
            out.append(f"{arm}: the baseline's {b['mean']:.2f} BLEU (s_opt {b['s_opt']:.2f}); no point is done yet.")
            continue
        best = max(pts, key=lambda p: pts[p]["delta"])
        x = pts[best]
        sig = [p for p, d in pts.items() if d["p_value_all_runs"] < alpha and d["delta"] > 0]
        out.append(f"{arm} ({a['sentences']} sentences, the baseline {b['mean']:.2f} BLEU, s_opt {b['s_opt']:.2f}): "
                   f"the largest gain is {best}'s {x['delta']:+.2f} (p = {_p(x['p_value_all_runs'])}, s_opt "
                   f"{x['s_opt']:.2f}); {len(sig)} of {len(pts)} points gain significantly at p < {alpha}"
                   + (f" ({', '.join(sig)})" if sig else "") + ".")
        curves = _curves(a)
        for net, ps in curves.items():
            if len(ps) < 2:
                continue
            sl = _slope(ps)
            ppl = [p["valid_ppl"] for p in ps]
            out.append(f"{arm}, {net} ({ps[0]['table']} table, {ps[0]['hidden']} hidden): from "
                       f"{budget_text(ps[0]['budget_updates'])} to {budget_text(ps[-1]['budget_updates'])} updates "
                       f"({_f(ps[0].get('trained_minutes'), '{:.0f}')} to {_f(ps[-1].get('trained_minutes'), '{:.0f}')} "
                       f"minutes) the gain goes from {ps[0]['delta']:+.2f} to {ps[-1]['delta']:+.2f} ({sl:+.2f} per "
                       "doubling of the training, least squares) while the validation perplexity goes from "
                       + (f"{ppl[0]:.1f} to {ppl[-1]:.1f}" if None not in ppl else "n/a") + ".")
            effects.append(("training (updates)", abs(ps[-1]["delta"] - ps[0]["delta"]),
                            f"{net}, {budget_text(ps[0]['budget_updates'])} to {budget_text(ps[-1]['budget_updates'])} updates"))
        for differ, same, what in (("table", ("hidden", "maxout-units", "path"), "training data"),
                                   ("hidden", ("table", "path"), "size")):
            for e in _paired_effect(curves, {}, differ, same):
                out.append(f"{arm}, {what}: {e['b']} ({e['values'][1]}) gains {e['difference']:+.2f} more than "
                           f"{e['a']} ({e['values'][0]}) on average over the budgets both have "
                           f"({', '.join(budget_text(m) for m in e['budgets'])} updates).")
                effects.append((what, abs(e["difference"]), f"{e['a']} against {e['b']}"))
        for p, d in pts.items():
            if d["kind"] == "pair" and d["networks"][0] in pts:
                f = pts[d["networks"][0]]
                out.append(f"{arm}, the second direction: {p} ({' + '.join(d['networks'])}) gains {d['delta']:+.2f} "
                           f"(p = {_p(d['p_value_all_runs'])}) against {f['delta']:+.2f} for the forward network alone.")
                effects.append(("second direction", abs(d["delta"] - f["delta"]), p))
    arms = list(r["sets"])
    for i, a in enumerate(arms):
        for b in arms[i + 1:]:
            common = set(r["sets"][a]["points"]) & set(r["sets"][b]["points"])
            for p in sorted(common):
                da, db = r["sets"][a]["points"][p]["delta"], r["sets"][b]["points"][p]["delta"]
                out.append(f"Domain: {p} gains {da:+.2f} tuned on {a} and {db:+.2f} tuned on {b}.")
                effects.append(("domain", abs(db - da), p))
        t = r["sets"][a].get("test")
        if t:
            parts = [f"{s} {d['delta']:+.2f} (p = {_p(d['p_value_all_runs'])})" for s, d in t["systems"].items()
                     if s != BASELINE]
            if parts:
                out.append(f"{a}, tested on {t['name']} (the baseline {t['systems'][BASELINE]['mean']:.2f}): "
                           + ", ".join(parts) + ".")
            # a gain on the tuning set that the held-out set does not show may be MERT's fit to it
            for s, d in t["systems"].items():
                dev = r["sets"][a]["points"].get(s)
                if s != BASELINE and dev and dev["delta"] > 0 and d["delta"] < dev["delta"] / 2:
                    out.append(f"{a}: {s} gains {dev['delta']:+.2f} on the set it was tuned on but "
                               f"{d['delta']:+.2f} on {t['name']}, held out (p = {_p(d['p_value_all_runs'])}): "
                               "the held-out set does not confirm it, and the tuning set's gain may be MERT's "
                               "fit to that set.")
    if effects:
        top = max(effects, key=lambda e: e[1])
        rest = sorted(effects, key=lambda e: -e[1])[1:4]
        out.append("Of the factors measured, " + top[0] + f" moves the gain most ({top[1]:.2f} BLEU: {top[2]})"
                   + ("; " + ", ".join(f"{w} {v:.2f} ({where})" for w, v, where in rest) + " next." if rest else "."))
        # a difference of means smaller than the spread of single MERT runs is not yet an effect
        spread = max([a["baseline"]["s_opt"] for a in r["sets"].values()]
                     + [d["s_opt"] for a in r["sets"].values() for d in a["points"].values()])
        if top[1] < spread:
            out.append(f"That is less than the spread of the MERT runs themselves (s_opt up to {spread:.2f} over the "
                       "baseline and the points): with these runs no factor is shown to move the gain yet.")
    for arm, a in r["sets"].items():
        curves = _curves(a)
        if not curves:
            continue
        net = max(curves, key=lambda n: curves[n][-1]["delta"])
        ps = curves[net]
        sl = _slope(ps)
        if sl is not None:
            last = ps[-1]
            out.append(f"{arm}: if {net}'s trend held, twice its largest budget ({budget_text(2 * last['budget_updates'])} "
                       f"updates) would add {sl:+.2f} BLEU to its {last['delta']:+.2f} and four times "
                       f"{2 * sl:+.2f}; the trend rests on {len(ps)} budgets whose runs spread by s_opt up to "
                       f"{max(p['s_opt'] for p in ps):.2f}, so it is a guess, not a measurement.")
    for arm, a in r["sets"].items():
        t = a.get("table1")
        if t:
            same = [f"{p} {d['mert_delta']:+.2f}" for p, d in a["points"].items()
                    if d["kind"] == "network" and d["table"] == t["table"] and d["hidden"] == t["hidden"]
                    and d.get("mert_delta") is not None]
            out.append(f"{arm}: Table 1's network ({t['table']} table, {t['hidden']} hidden, {t['updates']:,} updates in "
                       f"{t['trained_minutes']:.0f} minutes, validation perplexity {t['valid_ppl']:.2f}) gained "
                       f"{t['delta']:+.2f} in MERT's tokenised BLEU over its baseline ({t['baseline_mean']:.2f}) here, "
                       f"over {t['runs']} MERT runs of that report ({t['report']})"
                       + (f"; this study's networks of that table and size, in the same measure: {', '.join(same)}"
                          if same else "") + ".")
    shares = [s for a in r["sets"].values() for d in a["points"].values() for s in d["rnn_share"] if s is not None]
    if shares:
        out.append(f"MERT gives the RNN column {min(shares):.1%} to {max(shares):.1%} of the L1 norm of the weights "
                   "over all points and runs.")
    sp = [(p, d["spearman"]) for a in r["sets"].values() for p, d in a["points"].items() if "spearman" in d]
    if sp:
        out.append("Spearman of the RNN score with the table's p(target|source), lowest to highest over the points: "
                   f"{min(s['p(target|source)'] for _, s in sp):.2f} to {max(s['p(target|source)'] for _, s in sp):.2f}"
                   f"; with lex(target|source): {min(s['lex(target|source)'] for _, s in sp):.2f} to "
                   f"{max(s['lex(target|source)'] for _, s in sp):.2f}.")
    r2 = [d["r2_within_source"] for a in r["sets"].values() for d in a["points"].values() if "r2_within_source" in d]
    if r2:
        out.append(f"A weighting of the table's four scores and the target length explains {min(r2):.0%} to "
                   f"{max(r2):.0%} of the RNN score's variance among a source's targets (R² within sources, over the "
                   f"{len(r2)} points measured): what the log-linear model could already say; the rest is all the "
                   "feature can add.")
    return out


def best_setting(r: dict) -> dict:
    """Per tuning set, the point with the largest mean gain there (the only set it is chosen on)."""
    out = {}
    for arm, a in r["sets"].items():
        if a["points"]:
            p = max(a["points"], key=lambda x: a["points"][x]["delta"])
            out[arm] = {"point": p, "delta": a["points"][p]["delta"], "p_value": a["points"][p]["p_value_all_runs"]}
    return out


def costs(records: list[dict]) -> dict:
    """Minutes of the stages run, by kind (training, tuning, scoring, decoding, other)."""
    kinds = {"train": "training", "tune": "tuning", "score": "scoring", "test": "decoding"}
    out: dict[str, float] = {}
    for rec in records:
        if rec.get("pending") or "seconds" not in rec:
            continue
        name = rec["stage"].split(".", 1)[-1]
        kind = next((v for k, v in kinds.items() if name.startswith(k)), "other")
        out[kind] = out.get(kind, 0.0) + rec["seconds"] / 60
    return {k: round(v, 1) for k, v in out.items()}


def write_report(study, records: list[dict]) -> dict:
    done = {rec["stage"] for rec in records if not rec.get("pending")}
    if not hasattr(study, "exps"):
        study.stages()
    nets = {}
    for net, n in study.networks.items():
        nets[net] = {"table": n["table"], "inverse": n["inverse"], **network_size(study, net),
                     "options": n["options"], "path": training_path(study, net),
                     "checkpoints": {budget_text(m): _checkpoint_info(study, net, m) for m in n["updates"]
                                     if f"{slug(net)}.train-{budget_text(m)}" in done}}
    r = {"config": study.path, "generated": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
         "machine": describe_machine(), "runs": study.runs,
         "tuning": dict(study.cp["tuning"]) if "tuning" in study.cp else {},
         "networks": nets, "pairs": {p: [point_name(n, m) for n, m in v] for p, v in study.pairs.items()},
         "rnn": dict(study.cp["rnn"]) if "rnn" in study.cp else {},
         "sets": {}, "stages": records, "pending": [rec["stage"] for rec in records if rec.get("pending")]}
    for arm in study.exps:
        a = _arm(study, arm, done)
        if a is not None:
            r["sets"][arm] = a
            t1 = table1_reference(study, arm)
            if t1:
                a["table1"] = t1
    previous = os.path.join(study.report, "results.json")
    if os.path.exists(previous):
        try:
            with open(previous) as f:
                carry_over(r, json.load(f), study)
        except ValueError as e:
            raise ValueError(f"{previous}: not the JSON of a report ({e}): move it away to write a new one") from None
    r["best"] = best_setting(r)
    r["findings"] = findings(r)
    r["cost_minutes"] = costs(records)
    write_results(study.report, r, markdown, plots)
    return r


def plots(r: dict, out: str) -> None:
    """The gain against training updates and against validation perplexity, once a point is measured."""
    if any(a["points"] for a in r["sets"].values()):
        plot_gain(r, "budget_updates", "training updates (log scale)", os.path.join(out, "gain-vs-updates.png"))
        plot_gain(r, "valid_ppl", "validation perplexity of the network", os.path.join(out, "gain-vs-perplexity.png"))


def plot_gain(r: dict, x_key: str, x_label: str, path: str) -> None:
    """Dev BLEU gain over the baseline against ``x_key``: one line per network and tuning set
    (each run's gain as dots), pairs of networks as stars."""
    arms = [a for a in r["sets"] if r["sets"][a]["points"]]
    fig, axes = plt.subplots(1, len(arms), figsize=(5.6 * len(arms), 4.2), dpi=110, squeeze=False)
    for ax, arm in zip(axes[0], arms):
        a = r["sets"][arm]
        for net, ps in _curves(a).items():
            ps = [p for p in ps if p.get(x_key) is not None]
            if not ps:
                continue
            xs = [p[x_key] for p in ps]
            line, = ax.plot(xs, [p["delta"] for p in ps], "o-",
                            label=f"{net} ({ps[0]['table']}, {ps[0]['hidden']} hidden)")
            for p in ps:
                ax.plot([p[x_key]] * len(p["delta_per_run"]), p["delta_per_run"], ".", color=line.get_color(),
                        alpha=0.5)
        for name, p in a["points"].items():
            if p["kind"] == "pair" and p.get(x_key) is not None:
                ax.plot([p[x_key]], [p["delta"]], "*", ms=12, label=f"{name} (both directions)")
        ax.axhline(0, color="grey", lw=1)
        ax.axhspan(-a["baseline"]["s_opt"], a["baseline"]["s_opt"], color="grey", alpha=0.12,
                   label="baseline's s_opt")
        if x_key == "budget_updates":
            ax.set_xscale("log", base=2)
        ax.set_xlabel(x_label)
        ax.set_ylabel(f"BLEU gain over the baseline ({a['baseline']['mean']:.2f})")
        ax.set_title(f"{arm}: mean of {r['runs']} MERT runs (line), each run (dots)", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    save_figure(fig, path)


def _f(v, fmt="{:.2f}") -> str:
    return "–" if v is None else fmt.format(v)


def _md_arm(arm: str, a: dict) -> list[str]:
    """A tuning set: its baseline, a row per point, Table 1's run on it, its test set."""
    b = a["baseline"]
    carried = [p for p, d in a["points"].items() if d.get("carried_from")]
    L = [f"## Tuning set {arm} ({a['sentences']} sentences; system: {a['system']} tables)", "",
         f"Baseline: BLEU {', '.join(f'{x:.2f}' for x in b['bleu'])} (mean {b['mean']:.2f}, s_opt "
         f"{b['s_opt']:.2f}, s_sel {b['s_sel']:.2f}); MERT's tokenised BLEU "
         f"{', '.join(f'{x:.2f}' for x in b['mert_dev_bleu'])}. Signature: `{a['signature']}`."
         + (f" Measured by the run of the report of {a['carried_from']} (its work directory is gone here)."
            if a.get("carried_from") else ""), ""]
    if carried:
        L += ["Points marked † were measured by an earlier run with the same settings (the report of "
              + ", ".join(sorted({a['points'][p]['carried_from'] for p in carried})) + "), against the "
              "baseline mean given beside them, and kept from that report.", ""]
    rows = []
    for p, d in a["points"].items():
        sh = [s for s in d["rnn_share"] if s is not None]
        share = f"{min(sh):.1%}–{max(sh):.1%}" if sh else "–"
        if d.get("inverse_share"):
            share += " (inverse " + ", ".join(f"{s:.1%}" for s in d["inverse_share"] if s is not None) + ")"
        sp = d.get("spearman")
        mark = f" † (baseline {d['baseline_mean']:.2f})" if d.get("carried_from") else ""
        rows.append([f"{p}{mark}", d["table"], f"{d['hidden']} / {d['maxout-units']}", _f(d.get("updates"), "{:,}"),
                     _f(d.get("trained_minutes"), "{:.3g}"), _f(d.get("valid_ppl")),
                     ", ".join(f"{x:.2f}" for x in d["bleu"]), f"{d['mean']:.2f}", f"{d['delta']:+.2f}",
                     _f(d.get("mert_delta"), "{:+.2f}"),
                     f"{d['s_opt']:.2f}", _p(d["p_value_all_runs"]), share,
                     f"{sp['p(target|source)']:.2f} / {sp['lex(target|source)']:.2f}" if sp else "–",
                     _f(d.get("r2_within_source"))])
    L += markdown_table(["point", "table", "hidden / maxout", "updates", "minutes", "valid ppl", "BLEU per run", "mean",
                         "gain", "gain in MERT's BLEU", "s_opt", "p (all runs)", "RNN share of L1",
                         "Spearman p(t\\|s) / lex(t\\|s)", "R² by the table's features"], rows)
    L += ["", "R² by the table's features: of a least-squares fit of the RNN's log score on the table's four scores "
          "and the target length, within each source's targets (each variable minus its source's mean): the share "
          "of the score a weighting of the features the decoder already has could express.", ""]
    t1 = a.get("table1")
    if t1:
        L += [f"Table 1's run on this set ({t1['report']}, {t1['runs']} MERT runs with the same settings; its "
              f"network: {t1['table']} table, {t1['hidden']} / {t1['maxout-units']}, {t1['updates']:,} updates in "
              f"{t1['trained_minutes']:.0f} minutes, validation perplexity {t1['valid_ppl']:.2f}), in MERT's "
              f"tokenised BLEU (that report keeps no detokenised dev output; compare with the column \"gain in "
              f"MERT's BLEU\"): Baseline {', '.join(f'{x:.2f}' for x in t1['baseline'])} (mean "
              f"{t1['baseline_mean']:.2f}), +RNN {', '.join(f'{x:.2f}' for x in t1['rnn'])} (mean {t1['mean']:.2f}): "
              f"gain {t1['delta']:+.2f}.", ""]
    t = a.get("test")
    if t:
        L += [f"Tested on {t['name']} ({t['sentences']} sentences) with the weights tuned on {arm}; signature "
              f"`{t['signature']}`:", ""]
        L += markdown_table(["system", "BLEU per run", "mean", "gain", "s_opt", "p (all runs)"],
                            [[s, ", ".join(f"{x:.2f}" for x in d["bleu"]), f"{d['mean']:.2f}",
                              _f(d.get("delta"), "{:+.2f}"), f"{d['s_opt']:.2f}", _p(d.get("p_value_all_runs"))]
                             for s, d in t["systems"].items()])
        L.append("")
    return L


def _md_networks(r: dict) -> list[str]:
    rows = []
    for net, n in r["networks"].items():
        cks = "; ".join(f"{m}{' †' if c.get('carried_from') else ''} ({c['minutes']:.3g} min): validation "
                        f"perplexity {c['best_valid_ppl']:.2f}"
                        for m, c in n["checkpoints"].items() if c) or "not trained yet"
        rows.append([net, n["table"], DIRECTIONS[n["inverse"]], f"{n['hidden']} / {n['maxout-units']}",
                     f"`{n['path']}`" if n.get("path", "as [rnn]") != "as [rnn]" else "as [rnn]", cks])
    L = ["## Networks", ""] + markdown_table(["network", "table", "direction", "hidden / maxout", "training path",
                                              "checkpoints: updates (minutes they took), updates, validation perplexity"],
                                             rows)
    L += ["", "Training path: the `rescorer train` options beyond [rnn]'s (as [rnn]: "
          + " ".join(f"--{k} {v}" for k, v in r.get("rnn", {}).items()) + "). An update is one minibatch of "
          "--batch-size pairs (64 unless the path says otherwise). Factors are compared only between networks "
          "of one path. Minutes are the wall time a training took, which other work on the shared machine "
          "lengthens (a training resumed across sessions counts each session's); a budget is its updates."]
    if any(c and c.get("carried_from") for n in r["networks"].values() for c in n["checkpoints"].values()):
        L += ["", "†: a checkpoint trained by an earlier run with the same options, kept from its report."]
    return L


def markdown(r: dict) -> str:
    """The report, from the results structure alone (what results.json holds)."""
    L = ["# When does the RNN feature pay off?", "",
         f"Generated by `python experiments/rnn_gain.py --config {os.path.relpath(r['config'], ROOT)}`; "
         "do not edit by hand.",
         ""]
    m = r["machine"]
    L += [f"Machine: {m['cpu']}, {m['cores']} cores, CPU features: {', '.join(m['features']) or 'none'}, "
          f"{m['memory_gib']} GiB, GPU: {m['gpu'] or 'none'}; Python {m['python']}, torch {m['torch']}.", "",
          f"Each point: its network scores the tuning set's table, {r['runs']} MERT runs with their own seeds (as "
          "Table 1), the tuning set decoded with each run's weights. BLEU: sacrebleu on detokenised output against "
          "the raw reference; the gain is the mean over the runs minus the baseline's; p: sacrebleu's approximate "
          "randomization over all runs together. Measured on the set the weights were tuned on: the best setting is "
          "chosen there, never on a test set.", ""]
    if r["pending"]:
        begun = [rec["stage"] for rec in r["stages"] if rec.get("started")]
        L += [f"**Interim report** (`--report-only`), written while the run goes on: {len(r['pending'])} stages "
              f"not done yet (next: `{r['pending'][0]}`" + (f"; begun: {', '.join(begun)}" if begun else "")
              + "). Every number below comes from finished stages.", ""]
    L += ["## What this run shows", ""] + [f"- {x}" for x in r["findings"]] + [""]
    if r["best"]:
        L += ["Best setting per tuning set (largest mean gain there): " + "; ".join(
            f"{a}: {b['point']} ({b['delta']:+.2f}, p = {_p(b['p_value'])})" for a, b in r["best"].items()) + ".", ""]
    for arm, a in r["sets"].items():
        L += _md_arm(arm, a)
    if any(a["points"] for a in r["sets"].values()):
        L += ["![gain against training updates](gain-vs-updates.png)", "",
              "![gain against validation perplexity](gain-vs-perplexity.png)", ""]
    L += _md_networks(r)
    L += ["", "Cost of the stages run (minutes): " + (", ".join(f"{k} {v:g}" for k, v in r["cost_minutes"].items())
                                                      or "none yet") + ".", ""]
    return "\n".join(L) + "\n"


def summary(r: dict) -> str:
    lines = []
    for arm, a in r["sets"].items():
        lines.append(f"{arm}: baseline {a['baseline']['mean']:.2f}")
        for p, d in a["points"].items():
            lines.append(f"  {p:<28} {d['mean']:.2f} ({d['delta']:+.2f}, p = {_p(d['p_value_all_runs'])})")
    if r["pending"]:
        lines.append(f"{len(r['pending'])} stages pending")
    return "\n".join(lines) or "no tuning set done yet"
