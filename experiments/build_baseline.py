#!/usr/bin/env python3
"""Build a Moses-style phrase-based baseline from the shared raw parallel text, with no Moses.

    python experiments/build_baseline.py --config experiments/baseline.ini [--force]

Stages (each skipped when its outputs are up to date, as Moses's experiment.perl does):
prepare-SRC / prepare-TGT (normalise punctuation, tokenise, train a truecaser, truecase),
clean (1-80 words, ratio 9), align (eflomal both ways + grow-diag-final-and), tables
(phrase extraction up to 7 words, the four scores, msd-bidirectional-fe reordering),
sets (tuning/test sets tokenised and truecased), lm (KenLM lmplz 5-gram on the target side of
the training data plus the extra LM text; never the tuning or test references), ini.
Writes WORK/model/moses.ini, usable by 'rescorer decode' and by a real Moses, and
WORK/report.json with the time and peak memory of each stage.
"""
from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import time
from dataclasses import dataclass

from moses_integration import pipeline as P
from moses_integration import stages as S
from moses_integration.align import eflomal_align
from moses_integration.extract import build_tables
from moses_integration.prepare import clean_pair, train_truecaser
from rescorer.fileio import atomic_write
from rescorer.text import read_lines

from experiments.common import ROOT, ConfigError, data_dir, errors_exit, read_config


def corpus_spec(text: str) -> list[tuple[str, int | None]]:
    """'train/hansard:200000 train/news' -> [('train/hansard', 200000), ('train/news', None)]"""
    out = []
    for tok in text.split():
        name, _, n = tok.partition(":")
        out.append((name, int(n) if n else None))
    return out


def raw_file(data: str, prefix: str, lang: str) -> str:
    for cand in (f"{prefix}.{lang}.gz", f"{prefix}.{lang}"):
        if os.path.exists(os.path.join(data, cand)):
            return os.path.join(data, cand)
    raise FileNotFoundError(f"{os.path.join(data, prefix)}.{lang}(.gz): no such file")


def build(config: str, work: str, data: str, sets: str | None = None, progress: bool = True) -> dict:
    """The build of ``config`` in ``work`` (its stages skipped when done) as one stage record of
    an experiment that builds its system first: seconds, whether every stage was skipped, peak memory."""
    t = time.time()
    rep = main(["--config", config if os.path.isabs(config) else os.path.join(ROOT, config), "--work", work,
                "--data", data] + (["--sets", sets] if sets is not None else []) + ([] if progress else ["-q"]))
    return {"seconds": round(time.time() - t, 1), "skipped": all(r.get("skipped") for r in rep),
            "peak_memory_mb": max(r.get("peak_memory_mb", 0) for r in rep)}


@dataclass
class WholeBuild:
    """An experiment's ``[whole]`` section: the system built from the whole training text, whose
    whole phrase table networks may learn from.  ``config``: the config of this script that builds
    it (``build =``; None: no such system); ``dir``: its work directory (``dir =``, default
    WORK/whole: another experiment's build of the same config is shared when ``sets =`` is the
    same too, so that its stages are found done); ``sets``: the tuning and test sets it prepares
    instead of the config's own (``sets =``; None: the config's)."""
    config: str | None
    dir: str
    sets: str | None

    @classmethod
    def read(cls, cp, path: str, data: str, work: str) -> "WholeBuild":
        """The ``[whole]`` section of config ``cp`` (read from ``path``); ``dir =`` may use {data}
        and {work}."""
        d = cp.get("whole", "dir", fallback="").strip()
        try:
            d = os.path.abspath(d.format(data=data, work=work)) if d else os.path.join(work, "whole")
        except KeyError as e:
            raise ConfigError(f"{path}: [whole] dir = {d}: unknown placeholder {e} (known: data, work)") from None
        sets = cp.get("whole", "sets", fallback=None)
        return cls(cp.get("whole", "build", fallback="").strip() or None, d, sets.strip() if sets is not None else None)

    @property
    def table(self) -> str:
        return os.path.join(self.dir, "model", "phrase-table.gz")

    def built(self) -> bool:
        """Whether the system exists (the build's last stage writes its moses.ini)."""
        return os.path.exists(os.path.join(self.dir, "model", "moses.ini"))

    def run(self, data: str, progress: bool = True) -> dict:
        """The build (its stages skipped when done) as the stage record ``whole-build``."""
        return {"stage": "whole-build", **build(self.config, self.dir, data, self.sets, progress)}


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "baseline.ini"))
    ap.add_argument("--data", help="data directory (default: the config's, else $RESCORER_DATA, else ../shared/data)")
    ap.add_argument("--work", help="work directory (default: the config's)")
    ap.add_argument("--sets", help="the tuning and test sets to prepare, instead of the config's [data] sets "
                                   "(prefixes under the data directory, ':N' keeps the first N lines)")
    ap.add_argument("--force", action="store_true", help="run every stage again")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    a = ap.parse_args(argv)
    cfg = read_config(a.config)
    d, m = cfg["data"], cfg["model"]
    data = data_dir(a.data, d.get("dir"))
    work = a.work or cfg["work"].get("dir", "work/baseline")
    procs = cfg["work"].getint("processes", os.cpu_count() or 1)
    src, tgt = d.get("source", "en"), d.get("target", "fr")
    train = corpus_spec(d["train"])
    set_spec = d.get("sets", "") if a.sets is None else a.sets
    sets = corpus_spec(set_spec)
    lm_extra = [os.path.join(data, p) for p in d.get("lm-extra", "").split()]
    order, max_len = m.getint("lm-order", 5), m.getint("max-phrase-length", 7)
    c_min, c_max, ratio = m.getint("clean-min", 1), m.getint("clean-max", 80), m.getfloat("clean-ratio", 9.0)
    corpus, model, lmdir = (os.path.join(work, x) for x in ("corpus", "model", "lm"))
    for x in (corpus, model, lmdir):
        os.makedirs(x, exist_ok=True)
    raw = {lang: [raw_file(data, p, lang) for p, _ in train] for lang in (src, tgt)}
    tc = {lang: os.path.join(corpus, f"train.tc.{lang}.gz") for lang in (src, tgt)}
    tcm = {lang: os.path.join(model, f"truecase-model.{lang}") for lang in (src, tgt)}
    clean = {lang: os.path.join(corpus, f"train.clean.{lang}.gz") for lang in (src, tgt)}
    aligned = os.path.join(model, "aligned.grow-diag-final-and")
    pt = os.path.join(model, "phrase-table.gz")
    reo = os.path.join(model, "reordering-table.wbe-msd-bidirectional-fe.gz")
    lm_bin = os.path.join(lmdir, f"lm.{tgt}.binary")
    ini = os.path.join(model, "moses.ini")

    def prepare(lang):
        def run():
            lines = []
            for (prefix, n), path in zip(train, raw[lang]):
                lines += read_lines(path, n)
            tok = P.preprocess(lines, lang, None, procs, desc=f"tokenising {lang}")
            train_truecaser(tok, tcm[lang] + ".tmp")
            os.replace(tcm[lang] + ".tmp", tcm[lang])
            P.write_lines(tc[lang], _truecase(tok, tcm[lang], procs, lang))
            return {"lines": len(lines)}
        return S.Stage(f"prepare-{lang}", raw[lang], [tc[lang], tcm[lang]], run,
                       {"train": d["train"], "lang": lang})

    def run_clean():
        kept = 0
        s_lines, t_lines = read_lines(tc[src]), read_lines(tc[tgt])
        if len(s_lines) != len(t_lines):
            raise ValueError(f"{tc[src]} has {len(s_lines)} lines but {tc[tgt]} has {len(t_lines)}")
        pairs = [(s, t) for s, t in zip(s_lines, t_lines) if clean_pair(s, t, c_min, c_max, ratio)]
        kept = len(pairs)
        P.write_lines(clean[src], (s for s, _ in pairs))
        P.write_lines(clean[tgt], (t for _, t in pairs))
        return {"pairs_in": len(s_lines), "pairs_kept": kept}

    def run_align():
        n = eflomal_align(clean[src], clean[tgt], aligned, m.getint("eflomal-model", 3),
                          m.getint("eflomal-samplers", 2))
        return {"pairs": n}

    def run_tables():
        return build_tables(clean[src], clean[tgt], aligned, model, max_len, progress=not a.quiet, threads=procs)

    set_outputs = [os.path.join(corpus, f"{os.path.basename(p)}.tc.{lang}") for p, _ in sets for lang in (src, tgt)]

    def run_sets():
        for prefix, n in sets:
            for lang in (src, tgt):
                lines = read_lines(raw_file(data, prefix, lang), n)
                P.write_lines(os.path.join(corpus, f"{os.path.basename(prefix)}.tc.{lang}"),
                              _truecase(P.preprocess(lines, lang, None, procs, desc=f"tokenising {prefix}.{lang}"),
                                        tcm[lang], procs, lang))
        return {"sets": len(sets)}

    lm_text = os.path.join(corpus, f"lmextra.tc.{tgt}.gz")

    def run_lm():
        texts = [clean[tgt]]
        if lm_extra:
            lines = []
            for p in lm_extra:
                lines += read_lines(p)
            P.write_lines(lm_text, _truecase(P.preprocess(lines, tgt, None, procs, desc="tokenising LM text"),
                                             tcm[tgt], procs, tgt))
            texts.append(lm_text)
        arpa = os.path.join(lmdir, f"lm.{tgt}.arpa")
        P.build_lm(texts, order, arpa, lm_bin, lmdir)
        os.unlink(arpa)
        return {"order": order, "size_mb": round(os.path.getsize(lm_bin) / 2**20, 1)}

    def run_ini():
        with atomic_write(ini, "w") as f:
            f.write(P.moses_ini_text(os.path.abspath(pt), os.path.abspath(reo), os.path.abspath(lm_bin), order))
        return None

    stages = [prepare(src), prepare(tgt),
              S.Stage("clean", [tc[src], tc[tgt]], [clean[src], clean[tgt]], run_clean, {"min": c_min, "max": c_max,
                                                                                      "ratio": ratio}),
              S.Stage("align", [clean[src], clean[tgt]], [aligned], run_align,
                      {"model": m.get("eflomal-model", "3"), "samplers": m.get("eflomal-samplers", "2")}),
              S.Stage("tables", [clean[src], clean[tgt], aligned], [pt, reo], run_tables, {"max_len": max_len}),
              S.Stage("sets", [tcm[src], tcm[tgt]], set_outputs, run_sets, {"sets": set_spec}),
              S.Stage("lm", [clean[tgt], tcm[tgt]] + lm_extra, [lm_bin], run_lm, {"order": order}),
              S.Stage("ini", [pt, reo, lm_bin], [ini], run_ini, {"order": order})]
    report = S.run_stages(stages, work, a.force)
    with open(os.path.join(work, "report.json"), "w") as f:
        json.dump(report, f, indent=1)
    total = sum(r.get("seconds", 0) for r in report if not r.get("skipped"))
    for r in report:
        took = "skipped" if r.get("skipped") else f"{r['seconds']:7.1f} s"
        extra = " ".join(f"{k}={v}" for k, v in r.items() if k not in ("stage", "seconds", "peak_memory_mb", "skipped"))
        print(f"{r['stage']:<12} {took}  peak {r.get('peak_memory_mb', 0):6.0f} MB  {extra}")
    print(f"total {total / 60:.1f} min (stages run now); moses.ini: {ini}")
    return report


def _truecase(tokenised: list[str], model: str, procs: int, lang: str) -> list[str]:
    """Truecase tokenised lines with a Moses truecasing model (sacremoses), over worker processes."""
    chunks = [tokenised[i:i + 5000] for i in range(0, len(tokenised), 5000)]
    if procs <= 1 or len(chunks) <= 1:
        return [line for c in chunks for line in _truecase_chunk((model, c))]
    with mp.get_context("fork").Pool(procs) as pool:
        return [line for res in pool.imap(_truecase_chunk, [(model, c) for c in chunks]) for line in res]


def _truecase_chunk(args):
    model, lines = args
    from sacremoses import MosesTruecaser  # only the stages that truecase need it
    tc = MosesTruecaser(load_from=model)
    return [tc.truecase(line, return_str=True, use_known=True) if line.strip() else "" for line in lines]


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    with errors_exit(logging.getLogger("build_baseline")):  # a missing config: one line naming it
        main()
