#!/usr/bin/env python3
"""Benchmark: `rescorer score` against a naive scorer, paper-size network, one run.

    python experiments/bench_score.py [--sources 200] [--real] [--precision bf16 int8 [--model run/best.pt]]

* The network has the paper's sizes (1000 hidden, rank 100, 500 maxout units of 2,
  15,000-word shortlists) with random weights: speed does not depend on training.
* The synthetic table is shaped like a real one: about 20 targets per source (10-30),
  phrase lengths 1-7, words drawn from a Zipf law over 40,000 types (so some fall
  outside the shortlists), lines sorted by source as Moses writes them.
* Ours: the real `score_table` on that file (parsing, scoring, writing a gzipped table).
* Naive, written here, as the original code scored: batches of 64 pairs in file order,
  padded to the longest phrase with every padded position computed, the encoder run
  for every pair.  Both must give the same scores (checked).
* GFLOP/s counts the multiply-adds each method actually performs, against the peak of a
  large float32 matrix product measured in the same run.
* ``--real`` repeats the comparison on a slice of the shared Moses baseline table.
* ``--precision bf16 int8`` scores the same tables in reduced precision too (speed against
  fp32 and the naive scorer, and the largest log-probability difference to fp32); with
  ``--model run/best.pt --real`` the differences are also measured with a trained network.
"""
from __future__ import annotations

import argparse
import gzip
import os
import sys
import tempfile
import time
from collections import Counter

import numpy as np
import torch

from rescorer.model import ModelConfig, RNNEncoderDecoder
from rescorer.phrase_table import iter_table
from rescorer.score_table import score_table
from rescorer.scorer import PhraseScorer, difference_stats
from rescorer.vocab import Vocabulary
from rescorer.machine import cpu_features, cpu_name

from experiments.common import data_dir, write_results

LINES: list[str] = []   # what the run printed, for the report


def say(text: str = "") -> None:
    print(text)
    LINES.append(text)


def matmul_peak(n: int = 2048, reps: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e9


def zipf_words(rng, n_types: int, size: int) -> np.ndarray:
    ranks = np.arange(1, n_types + 1)
    p = 1.0 / ranks
    return rng.choice(n_types, size=size, p=p / p.sum())


# phrase lengths 1-7 in the proportions of the shared Moses baseline table (targets; sources)
REAL_TGT_LEN = [73184, 166777, 161693, 103530, 54988, 26863, 12965]
REAL_SRC_LEN = [4063, 11012, 7300, 2568, 637, 130, 23]


def synthetic_table(path: str, n_sources: int, shaped: bool, seed: int = 0) -> dict:
    """A sorted table of about 20 targets per source, phrase lengths 1-7.

    ``shaped=False``: lengths uniform in 1-7 and every target drawn independently (no
    shared prefixes beyond chance: the worst case for prefix trees).
    ``shaped=True``: lengths as in the real table, and targets made as phrase extraction
    makes them: a few core translations per source, cut or extended by a word or two at
    either end.  The real table shares 2.3 target symbols per prefix-tree node, this
    generator about 1.8 (printed below): it is the more cautious of the two.
    """
    rng = np.random.default_rng(seed)
    lines = []
    pt = np.array(REAL_TGT_LEN) / sum(REAL_TGT_LEN)
    ps = np.array(REAL_SRC_LEN) / sum(REAL_SRC_LEN)

    def words(prefix, n):
        return [f"{prefix}{w}" for w in zipf_words(rng, 40000, n)]
    for _ in range(n_sources):
        n_src = rng.choice(7, p=ps) + 1 if shaped else rng.integers(1, 8)
        src = " ".join(words("s", n_src))
        cores = [words("t", rng.choice(7, p=pt) + 1) for _ in range(3)]
        targets = set()
        for _ in range(rng.integers(10, 31) if not shaped else rng.integers(12, 33)):
            if not shaped:
                t = words("t", rng.integers(1, 8))
            else:
                core = cores[rng.integers(0, 3)]
                t = core[:rng.integers(1, len(core) + 1)] + words("t", rng.choice(3, p=[0.5, 0.35, 0.15]))
                if rng.random() < 0.3:
                    t = words("t", 1) + t
                t = t[:7]
            targets.add(" ".join(t))
        for t in targets:
            lines.append(f"{src} ||| {t} ||| 0.1 0.2 0.3 0.4 ||| 0-0 ||| 1 1 1\n".encode())
    lines = sorted(set(lines))
    with gzip.open(path, "wb") as f:
        f.writelines(lines)
    return table_shape(path)


def table_shape(path: str) -> dict:
    pairs = [(p.source, p.target) for p in iter_table(path)]
    nodes = {(s, tuple(t.split()[:k])) for s, t in pairs for k in range(len(t.split()) + 1)}
    symbols = sum(len(t.split()) + 1 for _, t in pairs)
    return {"pairs": len(pairs), "targets_per_source": len(pairs) / len({s for s, _ in pairs}),
            "target_symbols_per_pair": symbols / len(pairs), "symbols_per_tree_node": symbols / len(nodes)}


def vocab_of(words, size: int = 15000) -> Vocabulary:
    """The sample's own words, padded with dummy entries to the paper's shortlist size."""
    v = Vocabulary.from_counts(Counter(words), size)
    return Vocabulary(v.words + [f"pad{i}" for i in range(size - len(v))])


@torch.inference_mode()
def naive_scores(model: RNNEncoderDecoder, src: list[list[int]], tgt: list[list[int]], batch: int = 64):
    """The original code's way: file order, padded rectangles computed in full, encoder per pair."""
    enc, dec = model.encoder, model.decoder
    H = model.cfg.hidden
    out, macs = [], 0
    per = model.flops_per_token()
    for a in range(0, len(src), batch):
        S, T = src[a:a + batch], tgt[a:a + batch]
        B, Ls, Lt = len(S), max(map(len, S)), max(map(len, T))
        xs = torch.zeros(B, Ls, dtype=torch.long)
        ms = torch.zeros(B, Ls)
        for i, s in enumerate(S):
            xs[i, :len(s)] = torch.tensor(s)
            ms[i, :len(s)] = 1
        yt = torch.zeros(B, Lt, dtype=torch.long)
        mt = torch.zeros(B, Lt)
        for i, t in enumerate(T):
            yt[i, :len(t)] = torch.tensor(t)
            mt[i, :len(t)] = 1
        x = enc.cell.W_in(enc.embed(xs))
        h = torch.zeros(B, H)
        for t in range(Ls):
            h_new = enc.cell.step(x[:, t], h)
            m = ms[:, t:t + 1]
            h = m * h_new + (1 - m) * h
        c = torch.tanh(enc.V(h))
        h, Cc, Oc = dec.constants(c)
        e = dec.embed(yt)
        e_prev = torch.cat([torch.zeros(B, 1, e.shape[-1]), e[:, :-1]], 1)
        xd, inside = dec.input_terms(e_prev, Cc[:, None, :])
        states = []
        for t in range(Lt):
            h_new = dec.cell.step(xd[:, t], h, None if inside is None else inside[:, 0])
            m = mt[:, t:t + 1]
            h = m * h_new + (1 - m) * h
            states.append(h)
        st = torch.stack(states, 1).reshape(B * Lt, H)
        logp = dec.log_probs(st, e_prev.reshape(B * Lt, -1), Oc.repeat_interleave(Lt, 0))
        tok = logp.gather(1, yt.reshape(-1, 1)).view(B, Lt) * mt
        out.append(tok.double().sum(1))
        macs += B * (Ls * per["encoder_step"] + per["source_constants"] + Lt * per["decoder_step"]) // 2
    return torch.cat(out).numpy(), 2 * macs


def our_flops(model, pairs) -> int:
    """Multiply-adds x2 of the prefix-tree scorer on these pairs (chunk effects ignored)."""
    per = model.flops_per_token()
    sources = {}
    nodes = set()
    for s, t in pairs:
        sources[s] = len(s.split()) + 1
        words = t.split()
        for k in range(len(words) + 1):
            nodes.add((s, tuple(words[:k])))
    return (sum(sources.values()) * per["encoder_step"] + len(sources) * per["source_constants"]
            + len(nodes) * per["decoder_step"])


def score_file(scorer: PhraseScorer, table: str, out: str) -> tuple[np.ndarray, float]:
    """The real ``score_table`` on ``table``: log p of every line, and the seconds it took."""
    t = time.perf_counter()
    score_table(scorer, table, out, overwrite=True, progress=False)
    dt = time.perf_counter() - t
    return np.log([float(line.split(b" ||| ")[2].split()[-1]) for line in gzip.open(out, "rb")]), dt


def compare_precisions(name: str, table: str, model, sv, tv, precisions: list[str], tmp: str,
                       naive_pairs_s: float | None = None) -> dict:
    """fp32 against each reduced precision, same table, same run: speed and score differences."""
    out = os.path.join(tmp, "precision.gz")
    ref, t_ref = score_file(PhraseScorer(model, sv, tv, device="cpu"), table, out)
    n = len(ref)
    rows = {"fp32": {"pairs_s": n / t_ref}}
    say(f"\n[{name}: precision] {n} pairs")
    say(f"  fp32 : {n / t_ref:8.1f} pairs/s")
    for p in precisions:
        got, dt = score_file(PhraseScorer(model, sv, tv, device="cpu", precision=p), table, out)
        r = rows[p] = {"pairs_s": n / dt, "speed_vs_fp32": t_ref / dt, **difference_stats(ref, got)}
        if naive_pairs_s:
            r["speed_vs_naive"] = r["pairs_s"] / naive_pairs_s
        say(f"  {p:5}: {r['pairs_s']:8.1f} pairs/s  {r['speed_vs_fp32']:.2f}x fp32"
              + (f", {r['speed_vs_naive']:.2f}x naive" if naive_pairs_s else "")
              + f"; |log p - fp32| max {r['max_abs_diff']:.3f}, mean {r['mean_abs_diff']:.4f}, "
              f"99th percentile {r['p99_abs_diff']:.3f} (mean |log p| {r['mean_abs_logp']:.2f})")
    return rows


def compare(name: str, table: str, model, sv, tv, peak: float, tmp: str) -> dict:
    pairs = [(p.source, p.target) for p in iter_table(table)]
    n = len(pairs)
    out = os.path.join(tmp, os.path.basename(table) + ".rnn.gz")
    ours, t_ours = score_file(PhraseScorer(model, sv, tv, device="cpu"), table, out)

    src = [sv.ids(s.split()) for s, _ in pairs]
    tgt = [tv.ids(t.split()) for _, t in pairs]
    t = time.perf_counter()
    naive, naive_flop = naive_scores(model, src, tgt)
    t_naive = time.perf_counter() - t
    diff = np.abs(ours - naive).max()
    ours_flop = our_flops(model, pairs)
    r = {"pairs": n, "sources": len({s for s, _ in pairs}), "ours_pairs_s": n / t_ours,
         "naive_pairs_s": n / t_naive, "ratio": t_naive / t_ours,
         "ours_gflops": ours_flop / t_ours / 1e9, "naive_gflops": naive_flop / t_naive / 1e9,
         "flop_ratio": naive_flop / ours_flop, "max_abs_diff": diff}
    say(f"\n[{name}] {n} pairs, {r['sources']} sources")
    say(f"  ours : {r['ours_pairs_s']:8.1f} pairs/s  {r['ours_gflops']:5.1f} GFLOP/s "
          f"({100 * r['ours_gflops'] / peak:.0f}% of peak)  [end to end: read, score, write .gz]")
    say(f"  naive: {r['naive_pairs_s']:8.1f} pairs/s  {r['naive_gflops']:5.1f} GFLOP/s "
          f"({100 * r['naive_gflops'] / peak:.0f}% of peak)")
    say(f"  speed-up {r['ratio']:.2f}x  (the naive scorer does {r['flop_ratio']:.2f}x the arithmetic); "
          f"max |log p difference| {diff:.2e}")
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sources", type=int, default=150, help="source phrases of the synthetic table")
    ap.add_argument("--real", action="store_true", help="also a slice of the shared Moses baseline table")
    ap.add_argument("--data", default=data_dir())
    ap.add_argument("--hidden", type=int, default=1000)
    ap.add_argument("--precision", nargs="+", default=[], choices=["bf16", "int8"],
                    help="also score with these precisions (speed against fp32 and naive, score differences)")
    ap.add_argument("--out", help="also write results.md and results.json into this directory")
    ap.add_argument("--model", help="a trained checkpoint: with --precision and --real, the score differences "
                                    "on the real slice are measured with it (random weights say little about them)")
    a = ap.parse_args()
    torch.manual_seed(0)
    say(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {cpu_name()}, torch kernels for "
        f"{torch.backends.cpu.get_cpu_capability()}, CPU features: {', '.join(cpu_features()) or 'none listed'}")
    peak = matmul_peak()
    say(f"matrix-multiply peak (2048^3 float32): {peak:.1f} GFLOP/s")
    with tempfile.TemporaryDirectory() as tmp:
        tables = {}
        for shaped in (True, False):
            tables[shaped] = os.path.join(tmp, f"synthetic-{'shaped' if shaped else 'independent'}.gz")
            shape = synthetic_table(tables[shaped], a.sources, shaped)
            say(f"synthetic table, {'real-shaped' if shaped else 'independent targets'}: " +
                  ", ".join(f"{k} {v:.2f}" for k, v in shape.items()))
        pairs = [(p.source, p.target) for t in tables.values() for p in iter_table(t)]
        sv = vocab_of(w for s, _ in pairs for w in s.split())
        tv = vocab_of(w for _, t in pairs for w in t.split())
        model = RNNEncoderDecoder(ModelConfig(len(sv), len(tv), hidden=a.hidden)).eval()
        say(f"model: {model.cfg.to_dict()}, {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters")
        results = {"command": " ".join(["python experiments/bench_score.py"] + sys.argv[1:]), "cpu": cpu_name(),
                   "cpu_features": cpu_features(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                   "matmul_peak_gflops": peak, "model": model.cfg.to_dict()}
        r = results["synthetic_shaped"] = compare("synthetic, real-shaped", tables[True], model, sv, tv, peak, tmp)
        if a.precision:
            results["synthetic_shaped_precision"] = compare_precisions(
                "synthetic, real-shaped", tables[True], model, sv, tv, a.precision, tmp, r["naive_pairs_s"])
        results["synthetic_independent"] = compare("synthetic, independent targets (no shared prefixes)",
                                                   tables[False], model, sv, tv, peak, tmp)
        if a.real:
            src_table = os.path.join(a.data, "moses-baseline", "phrase-table.gz")
            real = os.path.join(tmp, "real.gz")
            with gzip.open(src_table, "rb") as f, gzip.open(real, "wb") as out:
                seen = 0
                prev = None
                for i, line in enumerate(f):
                    if i < 1_000_000:  # start in the middle of the table, away from punctuation
                        continue
                    s = line.split(b" ||| ", 1)[0]
                    if s != prev:
                        seen += 1
                        prev = s
                        if seen > a.sources:
                            break
                    out.write(line)
            say("real slice: " + ", ".join(f"{k} {v:.2f}" for k, v in table_shape(real).items()))
            rp = [(p.source, p.target) for p in iter_table(real)]
            rsv = vocab_of(w for s, _ in rp for w in s.split())
            rtv = vocab_of(w for _, t in rp for w in t.split())
            results["real"] = compare("real Moses table slice", real, model, rsv, rtv, peak, tmp)
            if a.precision:
                results["real_precision"] = compare_precisions("real Moses table slice", real, model, rsv, rtv,
                                                               a.precision, tmp, results["real"]["naive_pairs_s"])
            if a.precision and a.model:
                sc = PhraseScorer.load(a.model, "cpu")
                results["real_trained_precision"] = compare_precisions(f"real Moses table slice, trained model {a.model} "
                                   f"(hidden {sc.model.cfg.hidden})", real, sc.model, sc.src_vocab, sc.tgt_vocab,
                                   a.precision, tmp)

    if a.out:
        write_report(a.out, results)


def write_report(out: str, results: dict) -> None:
    write_results(out, results, markdown, default=float)


def markdown(results: dict) -> str:
    md = ["# Scoring speed: the prefix-tree scorer against a naive one, and reduced precision", "",
          f"Made by `{results['command']}`. Every number below was measured in that one run; "
          "the methods are described at the top of `experiments/bench_score.py`. The paper-size network has "
          "random weights: its speed is that of a trained one, but its output distributions are nearly uniform, "
          "so its score differences between precisions say nothing; those of the trained model (with `--model`) "
          "do.", "", "```"] + LINES + ["```"]
    return "\n".join(md) + "\n"


if __name__ == "__main__":
    main()
