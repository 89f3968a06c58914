#!/usr/bin/env python3
"""Benchmark: a MERT run with the built-in decoder on 1,000 sentences of newstest2012, with the
Table 1 settings (100-best, up to 8 iterations, 10 restarts, positive bounds, a perturbed start).

    python experiments/bench_tune.py [--sentences 1000] [--max-iter 8] [--restarts 10] [--out DIR]

The system of ``bench_decode.py`` (the Moses baseline tables filtered to the tuning set, a
5-gram KenLM model built here, Moses's default weights perturbed as Table 1's run 1 is;
decoder at pop limit 1000, stack 200).  Reports the time of loading, of decoding, of merging the
n-best lists into the pool and of optimising at every iteration, and the whole run's; then the
optimisation of the final pool again with numpy's line search in place of the compiled sweep
(``moses_integration/envelope.py``), same starts and seed: the speed-up of the compiled sweep
measured in this run, and whether both give the same weights; then the first
``--profile-sentences`` decoded with the tuned weights under cProfile, the time of each part
of a decode (translation options, future costs, the search, the n-best paths and their
feature vectors).  Writes ``results.md`` and ``results.json`` to ``--out``, and WORK/tuned.ini.
"""
from __future__ import annotations

import cProfile
import logging
import os
import pstats
import sys
import time

import numpy as np

from moses_integration import envelope, mert
from moses_integration.decoder import DecoderConfig
from moses_integration.mert import default_ranges, tune
from moses_integration.moses_ini import MosesIni
from moses_integration.runner import BuiltinDecoder
from rescorer.machine import describe as describe_machine

from experiments.bench_decode import arguments, build_system, rewrite_report
from experiments.common import markdown_table, write_results
from experiments.table1_stats import perturbed_start

TARGET_SECONDS = 300  # a MERT run of 1,000 sentences within 5 minutes on 2 cores


def compare_optimisers(pool: mert.NBestPool, w0: np.ndarray, w: np.ndarray, tunable: np.ndarray,
                       lower: np.ndarray, upper: np.ndarray, restarts: int, seed: int, processes: int) -> dict:
    """The run's final pool optimised from w0 and w with the compiled sweep and with numpy's:
    wall time of each, and whether the weights and BLEU are the same."""
    if not envelope.COMPILED:
        sys.exit("moses_integration/envelope.py is not compiled: run make setup")
    arrays = pool.arrays()
    out = {"candidates": pool.size()}
    results = {}
    for path in ("compiled", "numpy"):
        t = time.perf_counter()
        results[path] = mert.optimize(arrays, w0, tunable, restarts=restarts, seed=seed, lower=lower, upper=upper,
                                      extra_starts=[w], processes=processes, compiled=path == "compiled")
        out[f"{path}_seconds"] = time.perf_counter() - t
    out["speedup"] = out["numpy_seconds"] / out["compiled_seconds"]
    out["same_weights"] = bool(np.array_equal(results["compiled"][0], results["numpy"][0]))
    out["same_bleu"] = results["compiled"][1] == results["numpy"][1]
    out["pool_bleu"] = results["compiled"][1]
    return out


# the parts of decoding one sentence: (label, the decoder's method, its time counted). The
# compiled search and trellis paths are invisible to the profiler (Cython functions are not
# profiled), so they are the own time of the Python methods that call them.
DECODE_PARTS = (("translation options (table lookup, their scores)", "options", "cumulative"),
                ("future costs", "future_costs", "cumulative"),
                ("search (cube pruning, LM queries, recombination)", "_search", "own"),
                ("n-best: trellis paths", "_nbest", "own"),
                ("n-best: feature vectors of the paths", "_translation", "cumulative"))


def profile_decode(model, sentences: list[str], nbest: int) -> dict:
    """One process decoding ``sentences`` to ``nbest`` distinct translations under cProfile: the
    seconds of each part of ``DECODE_PARTS`` and of the whole (the profiler's overhead is in
    the Python parts only)."""
    prof = cProfile.Profile()
    t = time.perf_counter()
    prof.enable()
    for sent in sentences:
        model.decode(sent, nbest=nbest, distinct=True)
    prof.disable()
    total = time.perf_counter() - t
    stats = pstats.Stats(prof).stats
    parts = {}
    for label, name, counted in DECODE_PARTS:
        parts[label] = round(sum(own if counted == "own" else cum
                                 for (path, _, fn), (_, _, own, cum, _) in stats.items()
                                 if fn == name and path.endswith(os.path.join("moses_integration", "decoder.py"))), 2)
    return {"sentences": len(sentences), "nbest": nbest, "seconds": round(total, 2), "parts": parts}


def report(rep: dict) -> str:
    """results.md from results.json."""
    mc, s, cmp_ = rep["machine"], rep["settings"], rep["final_pool"]
    its = rep["iterations"]
    tot = rep["totals"]
    lines = ["# A MERT run on 1,000 sentences", "",
             "Generated by `" + rep["command"] + "`; do not edit by hand.", "",
             f"Machine: {mc['cpu']}, {mc['cores']} cores, CPU features: {', '.join(mc['features']) or 'none listed'}. "
             f"Input: the first {rep['sentences']} sentences of `{rep['input']}`, {s['nbest']}-best, up to "
             f"{s['max_iter']} iterations, {s['restarts']} restarts, positive bounds, Moses's default weights "
             f"perturbed (seed {s['seed']}), {s['processes']} processes; decoder at pop limit 1000, stack 200. "
             f"The machine's load average (1 minute) when the run began and ended: {rep['load_average'][0]:.2f}, "
             f"{rep['load_average'][1]:.2f} (the machine is shared: above 0 other work ran beside it).", "",
             "## The run", ""]
    rows = [[h["iteration"], f"{h['dev_bleu']:.2f}", h.get("pool", ""), h.get("new_candidates", ""),
             f"{h['decode_seconds']:.1f}", f"{h.get('merge_seconds', 0):.1f}",
             f"{h.get('optimise_seconds', 0) - h.get('merge_seconds', 0):.1f}" if "optimise_seconds" in h else "",
             h.get("stop", "")] for h in its]
    lines += markdown_table(["iteration", "dev BLEU (MERT's)", "pool", "new", "decode (s)", "merge (s)",
                             "optimise (s)", "stop"], rows)
    met = "within" if tot["tuning_seconds"] <= TARGET_SECONDS else "above"
    lines += ["", f"Loading the decoder: {rep['load_seconds']:.1f} s. Tuning: **{tot['tuning_seconds'] / 60:.1f} "
              f"minutes** ({met} the 5-minute target): decoding {tot['decode_seconds']:.0f} s "
              f"({100 * tot['decode_seconds'] / tot['tuning_seconds']:.0f}%), merging n-best lists "
              f"{tot['merge_seconds']:.0f} s, optimising {tot['optimise_seconds']:.0f} s, the rest (saving the "
              f"state, logging) {tot['other_seconds']:.0f} s. Best dev BLEU {rep['best_dev_bleu']:.2f}.", "",
              "## The optimiser: compiled sweep against numpy's", "",
              f"The final pool ({cmp_['candidates']:,} candidates) optimised again from the same starts and seed: "
              f"compiled sweep {cmp_['compiled_seconds']:.1f} s, numpy's {cmp_['numpy_seconds']:.1f} s "
              f"(**{cmp_['speedup']:.1f}x**); the same weights: {'yes' if cmp_['same_weights'] else 'NO'}, "
              f"the same pool BLEU: {'yes' if cmp_['same_bleu'] else 'NO'} ({cmp_['pool_bleu']:.4f})."]
    prof = rep.get("decode_profile")
    if prof:
        other = prof["seconds"] - sum(prof["parts"].values())
        lines += ["", "## Where a decode's time goes", "",
                  f"The first {prof['sentences']} sentences decoded to {prof['nbest']} distinct translations with "
                  f"the tuned weights, in one process under cProfile ({prof['seconds']:.1f} s with the profiler's "
                  "overhead):", ""]
        lines += markdown_table(["part", "seconds", "share"],
                                [[k, f"{v:.1f}", f"{100 * v / prof['seconds']:.0f}%"] for k, v in prof["parts"].items()]
                                + [["the rest (freeing the search graph, the loop)", f"{other:.1f}",
                                    f"{100 * other / prof['seconds']:.0f}%"]])
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = arguments(__doc__, 1000, "work/bench_tune", "experiments/results/bench_tune")
    ap.add_argument("--max-iter", type=int, default=8)
    ap.add_argument("--nbest", type=int, default=100)
    ap.add_argument("--restarts", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1001, help="MERT's seed and the perturbed start's (Table 1's run 1)")
    ap.add_argument("--profile-sentences", type=int, default=100,
                    help="sentences decoded under the profiler after tuning (default 100; 0: none)")
    a = ap.parse_args()
    if a.report_only:
        return rewrite_report(a.out, report)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    load_before = os.getloadavg()[0]
    ini_path, src = build_system(a)
    base = os.path.join(a.data, "moses-baseline")
    with open(os.path.join(base, "newstest2012.tc.fr"), encoding="utf-8") as f:
        ref = [r.split() for r in f.read().splitlines()[:a.sentences]]
    t = time.time()
    dec = BuiltinDecoder(ini_path, src, DecoderConfig(), a.processes, progress=False)
    load = time.time() - t
    groups = dec.layout.groups
    tunable = mert.tunable_mask(groups)
    lower, upper = default_ranges(groups)
    w0 = perturbed_start(dec.model.weights.copy(), tunable, a.seed)
    state = os.path.join(a.work, "tune.mert.npz")
    if os.path.exists(state):
        os.unlink(state)  # a run from the start: its state is saved after every iteration, as in Table 1
    t = time.time()
    res = tune(dec.nbest_lists, ref, w0, tunable, nbest=a.nbest, max_iter=a.max_iter, restarts=a.restarts,
               seed=a.seed, lower=lower, upper=upper, processes=a.processes, state=state)
    tuning = time.time() - t
    its = res.history
    totals = {"tuning_seconds": round(tuning, 1),
              "decode_seconds": round(sum(h["decode_seconds"] for h in its), 1),
              "merge_seconds": round(sum(h.get("merge_seconds", 0) for h in its), 1),
              "optimise_seconds": round(sum(h.get("optimise_seconds", 0) - h.get("merge_seconds", 0) for h in its), 1)}
    totals["other_seconds"] = round(tuning - totals["decode_seconds"] - totals["merge_seconds"]
                                    - totals["optimise_seconds"], 1)
    final = compare_optimisers(res.pool, w0, res.weights, tunable, lower, upper, a.restarts, a.seed, a.processes)
    dec.model.set_weights(res.weights)
    prof = profile_decode(dec.model, src[:a.profile_sentences], a.nbest) if a.profile_sentences else None
    rep = {"command": "python experiments/bench_tune.py " + " ".join(sys.argv[1:]), "machine": describe_machine(),
           "sentences": len(src), "input": a.input,
           "settings": {"nbest": a.nbest, "max_iter": a.max_iter, "restarts": a.restarts, "seed": a.seed,
                        "processes": a.processes},
           "load_seconds": round(load, 1), "totals": totals, "target_seconds": TARGET_SECONDS,
           "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
           "best_dev_bleu": max(h["dev_bleu"] for h in its),
           "iterations": [{k: v for k, v in h.items() if k != "weights"} for h in its], "final_pool": final,
           "decode_profile": prof}
    print(write_results(a.out, rep, report, default=None))
    ini = MosesIni.read(ini_path)
    sl = dec.layout.slices()
    ini.set_weights({n: list(res.weights[sl[n]]) for n, _, _ in groups if n in ini.weights()})
    ini.write(os.path.join(a.work, "tuned.ini"))


if __name__ == "__main__":
    main()
