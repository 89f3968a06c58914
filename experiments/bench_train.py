#!/usr/bin/env python3
"""Benchmark: how fast the RNN Encoder-Decoder trains on the CPU, path by path, to the same quality.

    python experiments/bench_train.py --config experiments/bench_train.ini

A *path* is a way of training the same network on the same pairs from the same seed: today's
trainer (``today``: the source of the commit before the by-source trainer, taken from git) and
each of the new trainer's options (``[paths]``).  The measure that matters is time to quality:
today's validation perplexity after ``minutes`` of training (the reference) and how many minutes
each path needs to reach it, on the uniformly drawn validation pairs.  Beside it, pairs/s, the
GFLOP/s of the matrix products each path really computes (a by-source batch computes fewer per
pair) and their share of the matrix-multiply peak measured in the same run.

The paths of one slot train side by side, one thread each, so that both see the same machine
(these machines are shared); every slot of a network is one stage.  Stages, cached under the
work directory and resumable (a slot interrupted is trained again from the start: its wall
times must be measured in one go):

  vocab              shortlists of the table
  data-pair          the unique pairs in shuffle buckets keyed by pair (uniform batches)
  data-source        the same pairs in buckets keyed by source (by-source batches)
  today-src          today's trainer, from git
  peaks              matrix-multiply peak, fp32 and bf16, one thread and all
  profile-NET        where a step's time goes, per path: preparing the batch, forward, backward,
                     clipping and the optimizer; the heaviest operations
  slot-NET-K         the paths of slot K trained side by side for ``minutes``

The report (results.md, results.json, curves.png) goes to [work] report.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

import numpy as np

# The rescorer modules a stage uses are imported inside it: a path's stages run in processes whose
# PYTHONPATH puts that path's source tree first (today's trainer is an older commit's rescorer, without
# the modules made since), so this module imports at its top only what every tree has.
from experiments.common import (
    ROOT, arguments, data_dir, errors_exit, head_stage, markdown_table, read_config, stage_records, vocab_stage,
    write_results)
from moses_integration import stages as S
from rescorer.fileio import atomic_write
from rescorer.plots import plt, save_figure


log = logging.getLogger("bench_train")
# the last commit whose trainer had only uniform batches: the `today` path
TODAY_REV = "f6d71b2"
class ConfigError(ValueError):
    pass


def _opts(text: str) -> list[str]:
    return text.split()


class Bench:
    def __init__(self, config: str, data: str | None = None, work: str | None = None, report: str | None = None,
                 progress: bool = True):
        cp = read_config(config)
        self.config, self.cp, self.progress = os.path.abspath(config), cp, progress
        self.data = data_dir(data)
        self.work = os.path.abspath(work or cp.get("work", "dir", fallback="work/bench_train"))
        self.report = os.path.abspath(report or cp.get("work", "report", fallback=os.path.join(self.work, "report")))
        self.table = os.path.abspath(cp.get("data", "phrase-table").format(data=self.data))
        self.lines = cp.getint("data", "lines", fallback=0)
        self.shortlist = cp.getint("data", "shortlist", fallback=15000)
        t = cp["training"]
        self.minutes = t.getfloat("minutes", 30.0)
        self.threads = t.getint("threads", 1)
        self.common = []
        for k in ("optimizer", "lr", "seed", "checkpoint-minutes", "patience"):
            if t.get(k, "").strip():
                self.common += [f"--{k}", t[k].strip()]
        if t.get("optimizer", "").strip() != "adam" or not t.get("lr", "").strip():
            raise ConfigError(f"{config}: [training] needs optimizer = adam and an lr = (the profile makes the "
                              "trainers' Adam)")
        self.paths = {k: _opts(v) for k, v in cp["paths"].items() if k not in ("slots", "recommended")}
        if "today" not in self.paths:
            raise ConfigError(f"{config}: [paths] needs today, the path every other is measured against")
        self.recommended = cp.get("paths", "recommended", fallback="").strip()
        if self.recommended not in self.paths:
            raise ConfigError(f"{config}: [paths] recommended = {self.recommended!r}: not one of the paths")
        self.slots = [s.split() for s in cp.get("paths", "slots").split(",") if s.strip()]
        for s in self.slots:
            for name in s:
                if name not in self.paths:
                    raise ConfigError(f"{config}: [paths] slots: {name!r} is not a path")
        if "today" not in self.slots[0]:
            raise ConfigError(f"{config}: [paths] slots: today belongs to the first slot")
        self.networks = {}
        for sec in cp.sections():
            if sec.startswith("network "):
                n = cp[sec]
                every = dict(x.split(":") for x in n.get("valid-every", "").split())
                missing = [p for p in self.paths if p not in every]
                if missing:
                    raise ConfigError(f"{config}: [{sec}] valid-every has no value for {', '.join(missing)}")
                self.networks[sec.split(None, 1)[1]] = {
                    "hidden": n.getint("hidden"), "rank": n.getint("rank"), "maxout_units": n.getint("maxout-units"),
                    "valid_every": {k: int(v) for k, v in every.items()}}
        if not self.networks:
            raise ConfigError(f"{config}: no [network NAME] section")
        self.vocab = os.path.join(self.work, "vocab")
        self.today_src = os.path.join(self.work, "today-src")
        self.table_used = os.path.join(self.work, "table.gz") if self.lines else self.table

    # -- paths and files ------------------------------------------------------------------------
    def data_dir(self, bucket_by: str) -> str:
        return os.path.join(self.work, f"data-{bucket_by}")

    def options(self, path: str) -> argparse.Namespace:
        """A path's `rescorer train` options as its own trainer's parser reads them (defaults
        included; today's parser has no --batching, --per-source or --precision)."""
        from rescorer.cli import build_parser, register  # the package this process runs: see env()
        return build_parser(register).parse_args(["train", "--phrase-table", self.table_used, "--vocab", self.vocab,
                                                  "--output", self.work, *self.common, *self.paths[path]])

    def bucket_by(self, path: str) -> str:
        return "source" if getattr(self.options(path), "batching", "uniform") == "by-source" else "pair"

    def run_dir(self, net: str, path: str) -> str:
        return os.path.join(self.work, "runs", net, path)

    def source(self, path: str) -> str:
        """The source tree whose rescorer package trains this path."""
        return self.today_src if path == "today" else ROOT

    def env(self, path: str) -> dict:
        """The environment of a path's processes: its source tree ahead of the installed package
        (the editable install's finder comes after PYTHONPATH), one thread count."""
        env = dict(os.environ, OMP_NUM_THREADS=str(self.threads), MKL_NUM_THREADS=str(self.threads))
        env["PYTHONPATH"] = os.pathsep.join([self.source(path)]
                                            + [p for p in [os.environ.get("PYTHONPATH")] if p])
        return env

    def train_command(self, net: str, path: str) -> list[str]:
        n = self.networks[net]
        opts = self.paths[path]
        return [sys.executable, "-m", "rescorer", "train", "-q", "--phrase-table", self.table_used,
                "--vocab", self.vocab, "--output", self.run_dir(net, path), "--hidden", str(n["hidden"]),
                "--rank", str(n["rank"]), "--maxout-units", str(n["maxout_units"]), *self.common,
                "--max-minutes", f"{self.minutes:g}", "--valid-every", str(n["valid_every"][path]), *opts]

    # -- stages ---------------------------------------------------------------------------------
    def stages(self) -> list[S.Stage]:
        out = []
        if self.lines:
            out.append(head_stage(self.table, self.table_used, self.lines))
        vocab = vocab_stage(self.table_used, self.vocab, self.shortlist)
        vocab_files = vocab.outputs
        out.append(vocab)
        seed = self.options("today").seed
        for bucket_by in ("pair", "source"):
            out.append(self._data_stage(bucket_by, seed, vocab_files))
        today_main = os.path.join(self.today_src, "rescorer", "trainer.py")

        def run_today_src():
            extract_revision(TODAY_REV, self.today_src)
            return {"revision": TODAY_REV}
        out.append(S.Stage("today-src", [], [today_main], run_today_src, {"revision": TODAY_REV}, isolated=False))
        peaks = os.path.join(self.work, "peaks.json")

        def run_peaks():
            res = {"1": matmul_peaks(1)}
            import torch
            if torch.get_num_threads() > 1:
                res[str(torch.get_num_threads())] = matmul_peaks(torch.get_num_threads())
            with atomic_write(peaks, "w") as f:
                json.dump(res, f, indent=1)
            return {"fp32_gflops_1_thread": round(res["1"]["fp32"], 1),
                    "bf16_gflops_1_thread": round(res["1"]["bf16"], 1)}
        out.append(S.Stage("peaks", [], [peaks], run_peaks))
        data_inputs = [os.path.join(self.data_dir(b), "meta.json") for b in ("pair", "source")]
        for net in self.networks:
            out.append(self._profile_stage(net, vocab_files + data_inputs + [today_main]))
        for net in self.networks:   # a network's slots together: its comparison is complete first
            for k, slot in enumerate(self.slots):
                out.append(self._slot_stage(net, k, slot, vocab_files + data_inputs + [today_main]))
        return out

    def _data_stage(self, bucket_by: str, seed: int, vocab_files: list[str]) -> S.Stage:
        d = self.data_dir(bucket_by)

        def run():
            from rescorer.data import prepare
            from rescorer.vocab import load_vocab_dir
            sv, tv = load_vocab_dir(self.vocab)
            meta = prepare(self.table_used, sv, tv, d, seed=seed, bucket_by=bucket_by, progress=self.progress)
            return {"train_pairs": meta["train_pairs"], "valid_pairs": meta["valid_pairs"]}
        return S.Stage(f"data-{bucket_by}", [self.table_used] + vocab_files, [os.path.join(d, "meta.json")], run,
                       {"seed": seed, "bucket_by": bucket_by})

    def _profile_stage(self, net: str, inputs: list[str]) -> S.Stage:
        result = os.path.join(self.work, f"profile-{net}.json")

        def run():
            res = {}
            for path in self.paths:
                with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
                    pass
                cmd = [sys.executable, os.path.abspath(__file__), "--config", self.config, "--data", self.data,
                       "--work", self.work, "--profile", net, path, tmp.name]
                subprocess.run(cmd, env=self.env(path), check=True, cwd=self.source(path))
                with open(tmp.name) as f:
                    r = json.load(f)
                os.unlink(tmp.name)
                flops, pairs = flops_of(self, net, path, PROFILE_WARMUP, PROFILE_STEPS)
                r.update(pairs=pairs, pairs_per_s=pairs / r["seconds"], gflops=flops / r["seconds"] / 1e9)
                # the work per pair of a path over many of its batches, for the training runs' GFLOP/s
                flops, pairs = flops_of(self, net, path, 0, 300)
                r["flops_per_pair"] = flops / pairs
                res[path] = r
            with atomic_write(result, "w") as f:
                json.dump(res, f, indent=1)
            return {p: round(r["pairs_per_s"]) for p, r in res.items()}
        return S.Stage(f"profile-{net}", inputs, [result], run,
                       {"network": self.networks[net], "paths": self.paths, "threads": self.threads})

    def _slot_stage(self, net: str, k: int, slot: list[str], inputs: list[str]) -> S.Stage:
        outputs = [os.path.join(self.run_dir(net, p), "summary.json") for p in slot]
        commands = {p: self.train_command(net, p) for p in slot}

        def run():
            procs = {}
            for p in slot:
                d = self.run_dir(net, p)
                shutil.rmtree(d, ignore_errors=True)      # a slot's wall times are measured in one go
                os.makedirs(d)
                os.symlink(self.data_dir(self.bucket_by(p)), os.path.join(d, "data"))
                log.info("%s, %s: %s", net, p, " ".join(commands[p][2:]))
                # run from the path's own source tree: `python -m` looks in the working directory first
                procs[p] = subprocess.Popen(commands[p], env=self.env(p), cwd=self.source(p))
            failed = [p for p, proc in procs.items() if proc.wait() != 0]
            if failed:
                raise RuntimeError(f"{net}: training path {', '.join(failed)} failed (its message is above)")
            info = {}
            for p in slot:
                with open(os.path.join(self.run_dir(net, p), "summary.json")) as f:
                    s = json.load(f)
                info[p] = {"updates": s["updates"], "best_valid_ppl": round(s["best_valid_ppl"], 3)}
            return info
        return S.Stage(f"slot-{net}-{k + 1}", inputs, outputs, run,
                       {"commands": {p: c[3:] for p, c in commands.items()}})

    def run(self, force: bool = False) -> list[dict]:
        os.makedirs(self.work, exist_ok=True)
        command = S.stage_command(__file__, ["--config", self.config, "--data", self.data, "--work", self.work,
                                             "--report", self.report] + ([] if self.progress else ["-q"]))
        return S.run_stages(self.stages(), self.work, force, isolate=command)


def extract_revision(rev: str, dest: str) -> None:
    """The ``rescorer`` package as it was at ``rev`` (git archive), into ``dest``."""
    tmp = dest + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        archive = subprocess.run(["git", "-C", ROOT, "archive", "--format=tar", rev, "rescorer"], check=True,
                                 capture_output=True).stdout
    except subprocess.CalledProcessError as e:
        raise RuntimeError(f"git archive {rev}: {e.stderr.decode(errors='replace').strip()} (today's trainer is "
                           "taken from the repository's history: run from a clone)") from e
    with tarfile.open(fileobj=__import__("io").BytesIO(archive)) as tar:
        tar.extractall(tmp, filter="data")
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)


def matmul_peaks(threads: int, n: int = 1024, seconds: float = 1.5) -> dict:
    """GFLOP/s of an n x n x n matrix product in fp32 and in bf16 with ``threads`` threads."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    res = {}
    try:
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
            for _ in range(3):
                a @ b
            best = 0.0
            for _ in range(3):  # the best of three rounds: the machine is shared
                k, t0 = 0, time.perf_counter()
                while time.perf_counter() - t0 < seconds / 3:
                    a @ b
                    k += 1
                best = max(best, 2 * n ** 3 * k / (time.perf_counter() - t0) / 1e9)
            res[name] = best
    finally:
        torch.set_num_threads(before)
    return res


# -- the work of a batch ---------------------------------------------------------------------------
def batch_flops(model_cfg, srcs, tgts, by_source: bool, softmax_words: int | None = None) -> float:
    """Floating-point operations of the matrix products of one training step (forward and
    backward, the backward counted as twice the forward), as this path computes them: every pair
    alone, or prefix trees (each distinct source encoded once, each distinct prefix one step);
    ``softmax_words``: a sampled softmax's output layer over that many words."""
    from rescorer.config import flops_per_token
    from rescorer.tree import PrefixForest
    f = dict(flops_per_token(model_cfg))
    if softmax_words is not None:  # G_l over V' rather than the shortlist
        f["decoder_step"] += 2 * model_cfg.rank * (softmax_words - model_cfg.tgt_vocab)
    if by_source:
        forest = PrefixForest.build(srcs, tgts)
        enc = sum(len(s) for s in forest.sources) * f["encoder_step"] + len(forest.sources) * f["source_constants"]
        dec = forest.n_nodes * f["decoder_step"]
    else:
        enc = sum(len(s) for s in srcs) * f["encoder_step"] + len(srcs) * f["source_constants"]
        dec = sum(len(t) for t in tgts) * f["decoder_step"]
    return 3.0 * (enc + dec)


def path_batches(bench: "Bench", path: str):
    """The minibatches of epoch 0 of a path, as its trainer makes them (today's uniform batches are
    the new trainer's uniform batches: the same function of the seed)."""
    from rescorer import data as pairdata
    a = bench.options(path)
    d = bench.data_dir(bench.bucket_by(path))
    n_buckets = len(pairdata.load_meta(d)["bucket_sizes"])
    if bench.bucket_by(path) == "source":
        return pairdata.epoch_batches_by_source(d, n_buckets, a.seed, 0, a.batch_size, a.per_source)
    return pairdata.epoch_batches(d, n_buckets, a.seed, 0, a.batch_size, 10)


def model_config(bench: "Bench", net: str):
    from rescorer.model import ModelConfig
    from rescorer.vocab import load_vocab_dir
    sv, tv = load_vocab_dir(bench.vocab)
    n = bench.networks[net]
    return ModelConfig(len(sv), len(tv), n["hidden"], n["rank"], n["maxout_units"])


def flops_of(bench: "Bench", net: str, path: str, first: int, count: int) -> tuple[float, int]:
    """FLOPs and pairs of batches ``first`` .. ``first + count`` of a path's epoch 0."""
    cfg = model_config(bench, net)
    by_source = bench.bucket_by(path) == "source"
    a = bench.options(path)
    k = getattr(a, "sampled_softmax", 0)
    flops, pairs = 0.0, 0
    for i, (srcs, tgts) in enumerate(itertools.islice(path_batches(bench, path), first, first + count), first):
        words = len(sampled_words(tgts, cfg.tgt_vocab, k, a.seed, i)) if k else None
        flops += batch_flops(cfg, srcs, tgts, by_source, words)
        pairs += len(srcs)
    return flops, pairs


def sampled_words(tgts, n: int, k: int, seed: int, batch: int):
    """The words of a sampled softmax's step, as the trainer draws them (epoch 0)."""
    from rescorer.trainer import softmax_words
    return softmax_words(np.concatenate([np.asarray(t) for t in tgts]), n, k, seed, 0, batch)


PROFILE_WARMUP, PROFILE_STEPS = 3, 12


def profile_path(bench: Bench, net: str, path: str, out: str) -> dict:
    """Time the phases of training steps of one path (in a process whose ``rescorer`` is that
    path's: only what today's trainer also has is used here), and list the heaviest operations."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    from rescorer.model import RNNEncoderDecoder, pad
    torch.set_num_threads(bench.threads)
    a = bench.options(path)
    by_source = bench.bucket_by(path) == "source"
    bf16 = getattr(a, "precision", "fp32") == "bf16"
    if bf16:   # the trainer's own bf16 step (a tree without bf16 has no rescorer.row_buckets)
        from rescorer.row_buckets import autocast
        precision = functools.partial(autocast, torch.device("cpu"), True)
    else:
        precision = contextlib.nullcontext
    torch.manual_seed(a.seed)
    model = RNNEncoderDecoder(model_config(bench, net))
    # the optimizer each trainer makes ([training] says Adam with its rate): today's per-tensor
    # Adam, the new trainer's fused one
    opt = torch.optim.Adam(model.parameters(), lr=a.lr, **({} if path == "today" else {"fused": True}))
    if by_source:
        from rescorer.tree import ForestModel, PrefixForest
        forest_model = ForestModel(model)
    it = enumerate(path_batches(bench, path))
    sample = getattr(a, "sampled_softmax", 0)
    phases = {"batch": 0.0, "forward": 0.0, "backward": 0.0, "clip and optimizer": 0.0}

    def step(timed: bool):
        t0 = time.perf_counter()
        i, (srcs, tgts) = next(it)
        batch = PrefixForest.build(srcs, tgts) if by_source else pad(srcs) + pad(tgts)
        cand = torch.from_numpy(sampled_words(tgts, model.cfg.tgt_vocab, sample, a.seed, i)) if sample else None
        t1 = time.perf_counter()
        with precision():
            extra = () if cand is None else (cand,)   # today's network takes no candidates
            logp = forest_model(batch, *extra) if by_source else model(*batch, *extra)
            loss = -logp.float().mean()
        t2 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t3 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        t4 = time.perf_counter()
        if timed:
            for k, dt in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                phases[k] += dt
    for _ in range(PROFILE_WARMUP):
        step(False)
    for _ in range(PROFILE_STEPS):
        step(True)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            step(False)
    ops = sorted((e for e in prof.key_averages() if e.key.startswith("aten::")), key=lambda e: -e.self_cpu_time_total)
    total_self = sum(e.self_cpu_time_total for e in ops) or 1.0
    seconds = sum(phases.values())
    res = {"seconds": seconds, "phases": {k: v / seconds for k, v in phases.items()},
           "top_ops": [[e.key, e.self_cpu_time_total / total_self] for e in ops[:8]], "bf16": bf16}
    with open(out, "w") as f:
        json.dump(res, f, indent=1)
    return res


# -- the report ------------------------------------------------------------------------------------
def curve(run_dir: str) -> tuple[list[float], list[float], dict]:
    """(training minutes, validation perplexity) at each validation, and the run's summary."""
    import torch
    st = torch.load(os.path.join(run_dir, "last.pt"), map_location="cpu", weights_only=False)["trainer"]
    with open(os.path.join(run_dir, "summary.json")) as f:
        summary = json.load(f)
    h = st["history"]
    return list(h["valid_minutes"]), [p for _, p in h["valid"]], summary


def minutes_to(minutes: list[float], ppl: list[float], target: float) -> float | None:
    """The first time the curve reaches ``target``, linearly interpolated between validations."""
    for i, (m, p) in enumerate(zip(minutes, ppl)):
        if p <= target:
            if i == 0:
                return m
            m0, p0 = minutes[i - 1], ppl[i - 1]
            return m0 + (m - m0) * (p0 - target) / (p0 - p) if p0 != p else m
    return None


def collect(bench: Bench, records: list[dict]) -> dict:
    from rescorer import machine  # not at the top: today's rescorer package, which has none, runs this script too
    with open(os.path.join(bench.work, "peaks.json")) as f:
        peaks = json.load(f)
    peak1 = peaks[str(bench.threads)]
    has_bf16 = machine.bf16_shortfall() is None
    pending = [r["stage"] for r in records if r.get("pending")]
    res = {"config": os.path.relpath(os.path.abspath(bench.config), ROOT), "machine": machine.describe(),
           "pending": pending,
           "today_revision": TODAY_REV, "minutes": bench.minutes, "threads": bench.threads,
           "table": os.path.basename(bench.table_used), "peaks": peaks, "recommended": bench.recommended,
           "paths": {p: " ".join(o) for p, o in bench.paths.items()}, "common": " ".join(bench.common),
           "slots": bench.slots, "networks": {}, "stages": records}
    for net, ncfg in bench.networks.items():
        with open(os.path.join(bench.work, f"profile-{net}.json")) as f:
            prof = json.load(f)
        runs = {}
        for k, slot in enumerate(bench.slots):
            if f"slot-{net}-{k + 1}" in pending:
                continue
            for p in slot:
                m, v, s = curve(bench.run_dir(net, p))
                runs[p] = {"minutes": m, "ppl": v, "summary": s}
        if "today" not in runs:
            continue
        # every run stops when its budget is used (its last validation just after): its best is its result
        reference = min(runs["today"]["ppl"])
        out = {}
        for p, r in runs.items():
            s = r["summary"]
            with open(os.path.join(bench.run_dir(net, p), "config.json")) as f:
                bs = json.load(f)["train"]["batch_size"]     # as the run itself recorded it
            pairs_per_s = s["updates"] * bs / (s["minutes"] * 60)
            gflops = pairs_per_s * prof[p]["flops_per_pair"] / 1e9
            out[p] = {"pairs_per_s": round(pairs_per_s, 1), "gflops": round(gflops, 2),
                      "fp32_peak_share": round(gflops / peak1["fp32"], 4),
                      "bf16_peak_share": round(gflops / peak1["bf16"], 4) if has_bf16 else None,
                      "reference_ppl": round(reference, 3),
                      "minutes_to_reference_ppl": bench.minutes if p == "today" else
                      (None if (t := minutes_to(r["minutes"], r["ppl"], reference)) is None else round(t, 2)),
                      "ppl_at_budget": round(min(r["ppl"]), 3),
                      "updates": s["updates"], "training_minutes": round(s["minutes"], 2),
                      "flops_per_pair": prof[p]["flops_per_pair"], "curve": [[a, b] for a, b in zip(r["minutes"], r["ppl"])],
                      "profile": prof[p]}
        out_speed = {p: (bench.minutes / o["minutes_to_reference_ppl"]) if o["minutes_to_reference_ppl"] else None
                     for p, o in out.items()}
        for p in out:
            out[p]["speedup_to_reference"] = None if out_speed[p] is None else round(out_speed[p], 2)
        res["networks"][net] = {"model": {k: v for k, v in ncfg.items() if k != "valid_every"}, **out}
    return res


def findings(res: dict) -> list[str]:
    """What the numbers say, in sentences made from them."""
    out = []
    d = res["recommended"]
    for net, r in res["networks"].items():
        t = r["today"]
        paths = [p for p in r if p not in ("model", "today")]
        reached = sorted((p for p in paths if r[p]["minutes_to_reference_ppl"] is not None),
                         key=lambda p: r[p]["minutes_to_reference_ppl"])
        s = (f"{net} network: today's trainer reaches validation perplexity {t['reference_ppl']:.2f} after "
             f"{res['minutes']:g} minutes ({t['pairs_per_s']:.0f} pairs/s, {t['fp32_peak_share']:.0%} of the fp32 peak). ")
        if reached:
            s += "To that perplexity: " + "; ".join(
                f"{p} {r[p]['minutes_to_reference_ppl']:.1f} min ({r[p]['speedup_to_reference']:.1f}x faster, "
                f"{r[p]['pairs_per_s']:.0f} pairs/s)" for p in reached) + ". "
        missed = [p for p in paths if p not in reached]
        if missed:
            s += ", ".join(missed) + (" does" if len(missed) == 1 else " do") + " not reach it within the budget. "
        if d in r:
            sp = r[d]["speedup_to_reference"]
            s += (f"The recommended path ({d}) is {sp:.1f}x faster to the same perplexity." if sp else
                  f"The recommended path ({d}) does not reach it.")
        out.append(s)
    return out


def plot(res: dict, path: str) -> None:
    nets = list(res["networks"])
    fig, axes = plt.subplots(1, len(nets), figsize=(5.6 * len(nets), 4.2), dpi=110, squeeze=False)
    for ax, net in zip(axes[0], nets):
        r = res["networks"][net]
        for p, o in r.items():
            if p == "model":
                continue
            c = o["curve"][1:]   # the first validation is the untrained network's
            ax.plot([m for m, _ in c], [v for _, v in c], "o-" if p == "today" else ".-", ms=3,
                    lw=2 if p in ("today", res["recommended"]) else 1, label=f"{p} ({o['pairs_per_s']:.0f} pairs/s)")
        ax.axhline(r["today"]["reference_ppl"], color="grey", ls=":", lw=1)
        ax.set_yscale("log")
        ax.set_xlabel(f"training minutes ({res['threads']} thread each, paths of a slot side by side)")
        ax.set_ylabel("validation perplexity per target symbol")
        m = r["model"]
        ax.set_title(f"{net}: {m['hidden']} hidden, {m['maxout_units']} maxout units", fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    save_figure(fig, path)


def markdown(res: dict) -> str:
    m = res["machine"]
    pk = res["peaks"][str(res["threads"])]
    L = ["# Training speed: today's trainer against the new paths, to the same validation perplexity", "",
         f"Generated by `python experiments/bench_train.py --config {res['config']}`; do not edit by hand.", ""]
    if res["pending"]:
        L += [f"**Written while the run goes on** (`--report-only`): stages still pending: "
              f"{', '.join(res['pending'])}. The command above resumes the run; the paths of a pending slot "
              "are not in the tables yet.", ""]
    L += [f"Machine: {m['cpu']}, {m['cores']} cores, CPU features: {', '.join(m['features']) or 'none listed'}; "
         f"torch {m['torch']}. Matrix-multiply peak measured in this run ({res['threads']} thread): "
         f"fp32 {pk['fp32']:.1f} GFLOP/s, bf16 {pk['bf16']:.1f} GFLOP/s"
         + "".join(f"; {k} threads: fp32 {v['fp32']:.1f}, bf16 {v['bf16']:.1f}" for k, v in res["peaks"].items()
                   if k != str(res["threads"])) + ".", "",
         f"Pairs: the unique pairs of `{res['table']}`; every path from the same seed and initial network, "
         f"options `{res['common']}`, {res['minutes']:g} minutes each. `today` is the trainer of commit "
         f"{res['today_revision']}. The paths of a slot trained side by side, {res['threads']} thread each: "
         + "; ".join(" and ".join(s) for s in res["slots"]) + ". Only the paths of one slot shared the same "
         "machine load; a path of another slot is compared with today's reference across loads (the machine is "
         "shared), so its ratio is less exact.", ""]
    L += markdown_table(["path", "options"], [[p, f"`{o}`"] for p, o in res["paths"].items()])
    L += ["", "## What this run shows", ""] + [f"- {x}" for x in findings(res)]
    L += ["", "![validation perplexity against training minutes](curves.png)", ""]
    for net, r in res["networks"].items():
        L += [f"## {net} network ({r['model']['hidden']} hidden, rank {r['model']['rank']}, "
              f"{r['model']['maxout_units']} maxout units)", ""]
        paths = {p: o for p, o in r.items() if p != "model"}
        rows = []
        for p, o in paths.items():
            mt = o["minutes_to_reference_ppl"]
            rows.append([p, f"{o['pairs_per_s']:.0f}", f"{o['gflops']:.1f}", f"{o['fp32_peak_share']:.0%}",
                         f"{o['bf16_peak_share']:.0%}" if o["bf16_peak_share"] is not None else "–",
                         f"{o['ppl_at_budget']:.2f}", "not reached" if mt is None else f"{mt:.1f}",
                         "–" if o["speedup_to_reference"] is None else f"{o['speedup_to_reference']:.1f}x",
                         f"{o['updates']:,}"])
        L += markdown_table(["path", "pairs/s", "GFLOP/s", "fp32 peak", "bf16 peak",
                             f"perplexity after {res['minutes']:g} min",
                             f"minutes to {r['today']['reference_ppl']:.2f}", "faster", "updates"], rows)
        L += ["", "Where a step's time goes (profile of a few steps, one thread):", ""]
        rows = []
        for p, o in paths.items():
            pr = o["profile"]
            ph = pr["phases"]
            rows.append([p, f"{pr['pairs_per_s']:.0f}", f"{pr['gflops']:.1f}", f"{pr['flops_per_pair'] / 1e6:.0f}M",
                         f"{ph['batch']:.0%}", f"{ph['forward']:.0%}", f"{ph['backward']:.0%}",
                         f"{ph['clip and optimizer']:.0%}", ", ".join(f"{k} {v:.0%}" for k, v in pr["top_ops"][:5])])
        L += markdown_table(["path", "pairs/s", "matrix-product GFLOP/s", "FLOP per pair", "batch", "forward",
                             "backward", "clip + optimizer", "heaviest operations (share of operator time)"], rows)
        L.append("")
    L += ["GFLOP/s count the matrix products each path really computes (forward and backward, the backward "
          "as twice the forward): a by-source batch encodes each distinct source once and steps each "
          "distinct target prefix once, so it computes fewer per pair; pairs/s include the validations.", ""]
    L += markdown_table(["stage", "time"], [[rec["stage"], f"{rec.get('seconds', 0) / 60:.1f} min"]
                                            for rec in res["stages"]])
    return "\n".join(L) + "\n"


def write_report(bench: Bench, records: list[dict]) -> dict:
    res = collect(bench, records)
    write_results(bench.report, res, markdown, default=None,
                  plots=lambda r, out: plot(r, os.path.join(out, "curves.png")) if r["networks"] else None)
    return res


def main(argv: list[str] | None = None) -> dict:
    ap = arguments(__doc__, os.path.join(ROOT, "experiments", "bench_train.ini"))
    ap.add_argument("--profile", nargs=3, metavar=("NETWORK", "PATH", "OUT"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    from rescorer.runtime import setup_logging
    with errors_exit(log):
        bench = Bench(a.config, a.data, a.work, a.report, progress=not a.quiet)
        os.makedirs(bench.work, exist_ok=True)
        setup_logging(os.path.join(bench.work, "bench_train.log"), extra=("bench_train",))
        if a.profile:
            return profile_path(bench, *a.profile)
        from rescorer import machine  # see collect()
        log.info("CPU: %s; features: %s", machine.cpu_name(), ", ".join(machine.cpu_features()) or "none listed")
        if a.run_stage:
            return S.run_one_stage(bench.stages(), a)
        return write_report(bench, stage_records(bench.stages, bench.work, a, bench.run))


if __name__ == "__main__":
    main()
