#!/usr/bin/env python3
"""Benchmark: the built-in decoder beside a real Moses, on the same model, input and settings.

    python experiments/bench_decode.py [--sentences 600] [--input newstest2013.tc.en]
        [--table1 work/table1 [--system rnn --set newstest2013]] [--repeats 3] [--processes 2]
        [--moses PATH] [--out DIR]

Systems: ``baseline`` is the Moses baseline tables (filtered to the input) with a 5-gram KenLM
model built here with lmplz from the French training text + lm/ (``--lm-lines`` limits the
training text) at Moses's default weights; with ``--table1 DIR`` (a Table 1 reproduction's work
directory, or a tuning set's directory of the RNN-gain study, ``work/rnn_gain/sets/NAME``),
``rnn`` is the system ``--system`` of that run (default ``rnn``, the +RNN system): its RNN-scored
table of the set ``--set`` (default ``newstest2013``, Table 1's test set; ``dev`` for its tuning
set, whose source ``--input`` must then name), filtered to the input, with its LM and the weights
of its first tuning run.

Both decoders run as users run them, whole processes with loading: ``rescorer decode --threads
P --n-best-list FILE 1`` and ``moses -search-algorithm 1 -cube-pruning-pop-limit 1000 -s 200
-threads P -n-best-list FILE 1`` (table-limit 20, distortion limit 6, the ini's own settings).
The runs alternate (``--repeats`` each; the report gives their median and every time).  Per
sentence, the best model score of the built-in decoder is compared with Moses's: equal within
1e-3 + 1e-5 |score| (Moses sums in single precision and prints 6 digits), else higher or lower.
Writes ``results.md`` and ``results.json`` to ``--out`` when Moses is there; without Moses it
prints the built-in decoder's figures only.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from moses_integration import pipeline
from moses_integration.evaluate import corpus_bleu, postprocess
from moses_integration.moses_ini import MosesIni
from moses_integration.nbest import group_by_sentence, read_nbest
from moses_integration.table_filter import filter_table
from moses_integration.runner import find_moses
from rescorer.fileio import atomic_write
from rescorer.machine import describe as describe_machine

from experiments.common import data_dir, markdown_table, read_lines, write_results

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED_MOSES = os.path.join(HERE, "..", "..", "shared", "tools", "moses", "moses")


def tool(name: str) -> str:
    """A KenLM program installed by ``make setup``; exits with its message when it is not there."""
    try:
        return pipeline.tool(name)
    except FileNotFoundError as e:
        sys.exit(str(e))


def build_system(a: argparse.Namespace) -> tuple[str, list[str]]:
    """moses.ini over the baseline tables filtered to the first a.sentences of a.input and an LM
    built here (once); the ini's path and the sentences."""
    base = os.path.join(a.data, "moses-baseline")
    os.makedirs(a.work, exist_ok=True)
    lm = os.path.join(a.work, f"lm{a.lm_lines}.binary")
    if not os.path.exists(lm):
        t = time.time()
        with tempfile.TemporaryDirectory() as tmp:
            arpa = os.path.join(tmp, "lm.arpa")
            cmd = (f"(zcat {base}/train.clean.fr.gz | head -{a.lm_lines}; zcat {base}/lmextra.tc.fr.gz) | "
                   f"{tool('lmplz')} -o 5 -S 20% -T {tmp} --discount_fallback > {arpa} 2>/dev/null && "
                   f"{tool('build_binary')} {arpa} {lm} >/dev/null 2>&1")
            subprocess.run(cmd, shell=True, check=True)
        print(f"LM: 5-gram, {a.lm_lines} training lines + lm/, built in {time.time() - t:.0f} s")
    src = open(os.path.join(base, a.input), encoding="utf-8").read().splitlines()[:a.sentences]
    ini_path = filtered_system(a.work, os.path.join(base, "moses.ini"), src,
                               os.path.join(base, "phrase-table.gz"),
                               os.path.join(base, "reordering-table.wbe-msd-bidirectional-fe.gz"), lm)
    return ini_path, src


def filtered_system(work: str, ini: str, src: list[str], table: str, reordering: str, lm: str,
                    weights: dict[str, list[float]] | None = None) -> str:
    """``ini`` over the tables filtered to ``src`` (made once), the LM and the weights given."""
    os.makedirs(work, exist_ok=True)
    pt, reo = os.path.join(work, "pt.gz"), os.path.join(work, "reo.gz")
    t = time.time()
    made_from = hashlib.sha256("\n".join(src).encode()).hexdigest()
    for full, part in ((table, pt), (reordering, reo)):
        stamp = part + ".made-from"  # the table and the sentences it was filtered for
        if not (os.path.exists(part) and os.path.exists(stamp) and open(stamp).read() == f"{full}\n{made_from}"):
            filter_table(full, src, part, overwrite=True)
            with atomic_write(stamp, "w") as f:
                f.write(f"{full}\n{made_from}")
    m = MosesIni.read(ini)
    for name, path in (("TranslationModel0", pt), ("LexicalReordering0", reo), ("LM0", lm)):
        m.set_feature_arg(name, "path", os.path.abspath(path))
    if weights:
        m.set_weights(weights)
    path = os.path.join(work, "moses.ini")
    m.write(path)
    print(f"{work}: tables filtered to {len(src)} sentences ({time.time() - t:.1f} s)")
    return path


def arguments(doc: str, sentences: int, work: str, out: str,
              input_file: str = "newstest2012.tc.en") -> argparse.ArgumentParser:
    """The options of the decoding benchmarks (this one and bench_tune): the system, its input,
    the work directory and the report's directory."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=data_dir())
    ap.add_argument("--input", default=input_file, help="source file in the data's moses-baseline/")
    ap.add_argument("--sentences", type=int, default=sentences)
    ap.add_argument("--lm-lines", type=int, default=200000)
    ap.add_argument("--processes", type=int, default=os.cpu_count())
    ap.add_argument("--work", default=work)
    ap.add_argument("--out", default=out, help=f"the report's directory (default {out})")
    ap.add_argument("--report-only", action="store_true", help="write results.md again from --out's results.json")
    return ap


def rewrite_report(out: str, report) -> None:
    """results.md written again by ``report`` from the results.json in ``out``, and printed."""
    with open(os.path.join(out, "results.json")) as f:
        text = report(json.load(f))
    with atomic_write(os.path.join(out, "results.md"), "w") as f:
        f.write(text)
    print(text)


def run_timed(argv: list[str], stdin: str, stdout: str) -> dict:
    """One whole process: wall time, CPU time and peak memory (its own, from wait4)."""
    with open(stdin, "rb") as fin, open(stdout, "wb") as fout:
        t = time.time()
        p = subprocess.Popen(argv, stdin=fin, stdout=fout, stderr=subprocess.PIPE)
        err = p.stderr.read()
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.time() - t
    if status != 0:
        sys.exit(f"{' '.join(argv[:3])} ... failed:\n{err.decode(errors='replace')[-2000:]}")
    return {"wall_s": round(wall, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "peak_mb": round(usage.ru_maxrss / 1024)}


def best_scores(nbest: str) -> list[tuple[str, float]]:
    return [(h[0].text.strip(), h[0].total) for h in group_by_sentence(read_nbest(nbest))]


def compare(ours: list[tuple[str, float]], theirs: list[tuple[str, float]]) -> dict:
    """Per sentence: our best model score against Moses's (equal within 1e-3 + 1e-5 |score|)."""
    if len(ours) != len(theirs):
        raise ValueError(f"{len(ours)} best translations against Moses's {len(theirs)}")
    out = {"higher": 0, "equal": 0, "lower": 0, "same_translation": 0}
    for (t_ours, s_ours), (t_moses, s_moses) in zip(ours, theirs):
        tol = 1e-3 + 1e-5 * abs(s_moses)
        out["equal" if abs(s_ours - s_moses) <= tol else "higher" if s_ours > s_moses else "lower"] += 1
        out["same_translation"] += t_ours == t_moses
    return out


def bench_system(name: str, ini: str, src: list[str], a, moses: str | None, refs: list[str] | None = None) -> dict:
    """Both decoders on ``src``, timed; their best model scores compared and, with the raw
    references ``refs``, each one's BLEU (sacrebleu, detruecased and detokenised output)."""
    work = os.path.join(a.work, name)
    os.makedirs(work, exist_ok=True)
    inp = os.path.join(work, "input.txt")
    with open(inp, "w", encoding="utf-8") as f:
        f.write("\n".join(src) + "\n")
    rescorer = os.path.join(os.path.dirname(sys.executable), "rescorer")
    cmds = {"builtin": [rescorer, "decode", "-q", "--ini", ini, "--input", inp, "--output", os.path.join(work, "builtin.out"),
                        "--n-best-list", os.path.join(work, "builtin.nbest"), "1", "--threads", str(a.processes),
                        "--overwrite"]}
    if moses:
        cmds["moses"] = [moses, "-f", ini, "-v", "0", "-search-algorithm", "1", "-cube-pruning-pop-limit", "1000",
                         "-s", "200", "-threads", str(a.processes), "-n-best-list", os.path.join(work, "moses.nbest"), "1"]
    runs: dict[str, list[dict]] = {k: [] for k in cmds}
    for r in range(a.repeats):
        for k in (list(cmds) if r % 2 == 0 else list(cmds)[::-1]):  # alternate which goes first
            runs[k].append(run_timed(cmds[k], inp, os.path.join(work, f"{k}.stdout")))
            print(f"{name} run {r + 1}, {k}: {runs[k][-1]}")
    res = {"sentences": len(src), "ini": ini, "runs": runs,
           "median_wall_s": {k: statistics.median(x["wall_s"] for x in v) for k, v in runs.items()}}
    if moses:
        med = res["median_wall_s"]
        res["speed_vs_moses"] = round(med["moses"] / med["builtin"], 3)
        res["best_score"] = compare(best_scores(os.path.join(work, "builtin.nbest")),
                                    best_scores(os.path.join(work, "moses.nbest")))
    if refs is not None:
        res["bleu"] = {}
        for k, out in (("builtin", "builtin.out"), ("moses", "moses.stdout")):
            if k in cmds:
                with open(os.path.join(work, out), encoding="utf-8") as f:
                    score, _, sig = corpus_bleu(postprocess(f.read().splitlines()), refs)
                res["bleu"][k], res["bleu_signature"] = round(score, 2), sig
    return res


def table1_system(a, src: list[str]) -> str:
    """System ``a.system`` of a Table 1 reproduction (or of a tuning set of the RNN-gain study):
    its scored table of set ``a.set``, LM and first tuned weights."""
    d = a.table1
    ini = os.path.join(d, "systems", a.system, f"moses.{a.set}.ini")
    if not os.path.exists(ini):
        sys.exit(f"--table1 {d} --system {a.system} --set {a.set}: no {ini}")
    m = MosesIni.read(ini)
    feat = {f.name: f for f in m.features()}
    weights = json.load(open(os.path.join(d, "tune", a.system, "run1.json")))["weights"]
    return filtered_system(os.path.join(a.work, "rnn"), ini, src, feat["TranslationModel0"].get("path"),
                           feat["LexicalReordering0"].get("path"), feat["LM0"].get("path"), weights)


def report(rep: dict) -> str:
    """results.md from results.json."""
    res, mc = rep["systems"], rep["machine"]
    repeats = len(next(iter(res.values()))["runs"]["builtin"])
    lines = ["# The built-in decoder beside Moses", "",
             f"Made by `{rep['command']}` on {mc['cpu']} ({mc['cores']} cores), with Moses at `{rep['moses']}`.", "",
             f"Input: the first {rep['sentences']} sentences of `{rep['input']}`. Both decoders as users run them: "
             f"whole processes with loading, {rep['processes']} threads (Moses) or processes (built-in), cube pruning "
             "with pop limit 1000, stack 200, table-limit 20, distortion limit 6, the 1-best n-best list written. "
             f"{repeats} runs each, alternating which goes first; the table gives the median wall time."]
    if "load_average" in rep:
        lines[-1] += (f" The machine's load average (1 minute) when the runs began and ended: "
                      f"{rep['load_average'][0]:.2f}, {rep['load_average'][1]:.2f} (the machine is shared: above 0, "
                      "other work ran beside both decoders).")
    lines.append("")
    rows = []
    for name, r in res.items():
        c, med = r["best_score"], r["median_wall_s"]
        peak = {k: max(x["peak_mb"] for x in v) for k, v in r["runs"].items()}
        rows.append([name, f"{med['builtin']:.1f}", f"{med['moses']:.1f}", f"**{r['speed_vs_moses']:.2f}x**",
                     f"{peak['builtin']} / {peak['moses']}",
                     f"{c['higher']} / {c['equal']} / {c['lower']} ({100 * c['equal'] / r['sentences']:.1f}% equal)",
                     c["same_translation"]]
                    + ([f"{r['bleu']['builtin']:.2f} / {r['bleu']['moses']:.2f}"] if "bleu" in r else []))
    bleu = next((r["bleu_signature"] for r in res.values() if "bleu" in r), None)
    lines += markdown_table(["system", "built-in (s)", "Moses (s)", "speed vs Moses", "peak MB built-in / Moses",
                             "best model score: higher / equal / lower", "same 1-best"]
                            + (["BLEU built-in / Moses"] if bleu else []), rows)
    if rep.get("rnn_system"):
        r = rep["rnn_system"]
        lines += ["", f"rnn: system `{r['system']}` of `{r['dir']}`, its RNN-scored table of {r['set']} filtered to the "
                  "input, with its LM and the weights of its first MERT run."]
    lines += ["", "Speed vs Moses is Moses's wall time over the built-in decoder's (above 1: faster). Peak memory "
              "is the largest resident set among a decoder's processes (the built-in decoder's workers are forked "
              "after loading and share its tables). Equal means within 1e-3 + 1e-5 |score|: Moses adds its scores in single precision and "
              "prints six digits."
              + (f" BLEU: each decoder's 1-best, detruecased and detokenised, against the raw reference (sacrebleu "
                 f"`{bleu}`)." if bleu else ""), "", "Every run:", ""]
    for name, r in res.items():
        for k, v in r["runs"].items():
            lines.append(f"- {name}, {k}: " + ", ".join(f"{x['wall_s']} s wall ({x['cpu_s']} s CPU)" for x in v))
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = arguments(__doc__, 600, "work/bench_decode", "experiments/results/bench_decode", "newstest2013.tc.en")
    ap.add_argument("--table1", help="a Table 1 reproduction's work directory (or a tuning set's of the RNN-gain "
                                     "study): adds its +RNN system")
    ap.add_argument("--system", default="rnn", help="with --table1: the system of that run (default rnn)")
    ap.add_argument("--set", default="newstest2013", help="with --table1: the set whose scored table it decodes "
                                                          "(default newstest2013; dev: the tuning set)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--moses", default=None, help="a Moses binary (default: $MOSES, PATH, or ../shared/tools/moses)")
    a = ap.parse_args()
    if a.report_only:
        return rewrite_report(a.out, report)
    moses = find_moses(a.moses) or (os.path.abspath(SHARED_MOSES) if os.access(SHARED_MOSES, os.X_OK) else None)
    ini, src = build_system(a)
    systems = {"baseline": ini}
    if a.table1:
        if a.set != "dev" and a.input != f"{a.set}.tc.en":
            sys.exit(f"--table1: the scored table of --set {a.set} is that of {a.set}.tc.en: give it as --input")
        systems["rnn"] = table1_system(a, src)
    load_before = os.getloadavg()[0]
    raw = os.path.join(a.data, "dev", a.input.replace(".tc.en", ".fr"))
    refs = read_lines(raw, (1, len(src))) if os.path.exists(raw) else None
    res = {name: bench_system(name, path, src, a, moses, refs) for name, path in systems.items()}
    if not moses:
        print("no real Moses here (give --moses or set MOSES to compare)")
        return
    rep = {"command": "python experiments/bench_decode.py " + " ".join(sys.argv[1:]), "moses": moses,
           "machine": describe_machine(), "sentences": a.sentences, "input": a.input, "processes": a.processes, "systems": res,
           "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
           "rnn_system": {"dir": a.table1, "system": a.system, "set": a.set} if a.table1 else None}
    print(write_results(a.out, rep, report, default=None))


if __name__ == "__main__":
    main()
