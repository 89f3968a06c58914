"""rescorer: train Cho et al.'s RNN Encoder-Decoder on a Moses phrase table and add its score.

    rescorer vocab --phrase-table model/phrase-table.gz --size 15000 --out vocab/
    rescorer train --phrase-table model/phrase-table.gz --vocab vocab/ --out run/ --max-minutes 60
    rescorer score --phrase-table model/phrase-table.gz --model run/best.pt --out phrase-table.rnn.gz
    rescorer ini set-table --ini moses.ini --path phrase-table.rnn.gz --out moses.rnn.ini
    rescorer tune --ini moses.rnn.ini --input dev.en --ref dev.fr --out-ini moses.tuned.ini
    rescorer cslm-train --text train.tc.fr.gz --vocab vocab/ --out cslm/ --max-minutes 600
    rescorer cslm-rescore --model cslm/best.pt --nbest nbest.txt --out nbest.cslm.txt
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

from . import __version__

log = logging.getLogger("rescorer")

EPILOG_SCORE = """\
The new column holds exp(log p(target | source)), a probability-like value, because
Moses takes max(ln x, -100) of every dense score when it loads a table.  With
--unk-count a second new column holds exp(-n), n = words of the pair outside the
network's shortlists (the paper's WP feature): Moses sees -n, like its WordPenalty.
Then raise num-features of the table's feature line in moses.ini by the number of new
columns and add as many weights ('rescorer ini set-table' does both), and tune.
"""


def _add_model_sizes(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("network sizes (defaults: the paper's)")
    g.add_argument("--hidden", type=int, default=1000, help="units of the encoder and decoder (default 1000)")
    g.add_argument("--rank", type=int, default=100,
                   help="rank of the input and output word matrices = embedding size (default 100)")
    g.add_argument("--maxout-units", type=int, default=500, help="maxout units of the deep output (default 500)")
    g.add_argument("--maxout-pool", type=int, default=2, help="pieces per maxout unit (default 2)")
    g.add_argument("--gate", choices=["reset-before", "reset-after"], default="reset-before",
                   help="reset gate before the recurrent matrix, as the original code "
                        "(default), or after it, as the paper's appendix prints")


def _add_training_options(p: argparse.ArgumentParser, items: str, batch: int, held_out: str) -> None:
    """The options every training command shares (one loop trains both networks)."""
    p.add_argument("--resume", action="store_true", help="continue OUT/last.pt exactly where it stopped")
    p.add_argument("--overwrite", action="store_true", help="start again over an existing run")
    p.add_argument("--max-minutes", type=float, help="time budget (training time, summed over resumes)")
    p.add_argument("--max-epochs", type=int, help="stop after this many passes over the data")
    p.add_argument("--max-updates", type=int, help="stop after this many minibatches")
    p.add_argument("--batch-size", type=int, default=batch, help=f"{items} per minibatch (default {batch})")
    p.add_argument("--valid-every", type=int, default=1000,
                   help="updates between validations (default 1000); 0: once per epoch, so that --patience "
                        "counts epochs as the paper's CSLM training did")
    p.add_argument("--valid-fraction", type=float, default=0.001,
                   help=f"share of {held_out} held out for validation (default 0.001)")
    p.add_argument("--patience", type=int, default=10,
                   help="stop after this many validations without improvement (default 10)")
    p.add_argument("--checkpoint-minutes", type=float, default=10.0, help="save OUT/last.pt this often (default 10)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rescorer", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    common.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    v = sub.add_parser("vocab", parents=[common], help="shortlist vocabularies of both sides of a phrase table",
                       description="Count the words of both sides over the pairs of a phrase table and keep "
                                   "the most frequent as the networks' shortlists (</s> and [UNK] included).")
    v.add_argument("--phrase-table", required=True, help="Moses phrase table, plain or gzipped")
    v.add_argument("--size", type=int, default=15000, help="shortlist size per language (default 15000)")
    v.add_argument("--source-size", type=int, help="source shortlist size (default --size)")
    v.add_argument("--target-size", type=int, help="target shortlist size (default --size)")
    v.add_argument("--out", required=True, help="directory for source.vocab and target.vocab")
    v.add_argument("--overwrite", action="store_true", help="replace existing vocabularies")

    t = sub.add_parser("train", parents=[common], help="train the RNN Encoder-Decoder on the unique pairs of a table",
                       description="Train on the unique phrase pairs of a Moses table (counts ignored, as in "
                                   "the paper): Adadelta, clipping at 1, validation perplexity, checkpoints "
                                   "(OUT/last.pt, OUT/best.pt), curves (OUT/curves.png). CPU or CUDA.")
    t.add_argument("--phrase-table", required=True, help="Moses phrase table, plain or gzipped")
    t.add_argument("--vocab", required=True, help="directory made by 'rescorer vocab'")
    t.add_argument("--out", required=True, help="run directory")
    t.add_argument("--inverse", action="store_true",
                   help="train on swapped pairs: the model gives p(source | target)")
    _add_training_options(t, "pairs", 64, "the unique pairs")
    t.add_argument("--buckets", type=int, default=16,
                   help="shuffle buckets on disk; each must fit in memory (default 16)")
    t.add_argument("--optimizer", choices=["adadelta", "adam"], default="adadelta",
                   help="Adadelta (rho 0.95, eps 1e-6) as the paper (default), or Adam")
    t.add_argument("--lr", type=float, help="learning rate (default 1.0 for Adadelta, 1e-3 for Adam)")
    t.add_argument("--seed", type=int, default=1234)
    t.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1 ...")
    _add_model_sizes(t)

    s = sub.add_parser("score", parents=[common], help="add the model's score as a new column of a phrase table",
                       description="Append exp(log p(target | source)) to the scores of every line of a "
                                   "Moses phrase table; every other field is kept byte for byte.",
                       epilog=EPILOG_SCORE, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--phrase-table", required=True, help="Moses phrase table, plain or gzipped")
    s.add_argument("--model", required=True, help="checkpoint from 'rescorer train' (run/best.pt)")
    s.add_argument("--out", required=True, help="output table (gzipped when the name ends in .gz)")
    s.add_argument("--unk-count", action="store_true",
                   help="also append exp(-n), n = words outside the shortlists (the paper's WP feature)")
    s.add_argument("--resume", action="store_true", help="continue an interrupted run (same bytes)")
    s.add_argument("--overwrite", action="store_true", help="replace an existing output")
    s.add_argument("--vocab", help="check that the model's vocabularies are the ones in this directory")
    s.add_argument("--chunk-lines", type=int, default=4096, help="lines scored at once (default 4096)")
    s.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda ...")
    i = sub.add_parser("ini", help="edit a moses.ini: point a table at a scored file, add a feature, set weights",
                       description="Change a moses.ini and write it to --out; everything else in the file "
                                   "is kept byte for byte.")
    isub = i.add_subparsers(dest="ini_command", required=True, metavar="ACTION")
    st = isub.add_parser("set-table", parents=[common],
                         help="point a phrase-table feature at a (scored) table; num-features and weights follow",
                         description="Set path= of a phrase-table feature and num-features= to the number of "
                                     "dense scores the table really has, adding a weight per new column "
                                     "(idempotent: running it twice adds nothing).")
    st.add_argument("--ini", required=True, help="moses.ini to read")
    st.add_argument("--feature", default="TranslationModel0", help="name= of the table feature (default TranslationModel0)")
    st.add_argument("--path", required=True, help="the table, e.g. the output of 'rescorer score'")
    st.add_argument("--start-weight", type=float, default=0.2,
                    help="weight of each new column before tuning (default 0.2, as Moses's TM weights)")
    st.add_argument("--out", required=True, help="moses.ini to write")
    st.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    af = isub.add_parser("add-feature", parents=[common], help="add (or replace) a feature line and its weights",
                         description="Add a feature line to [feature] and its weight line to [weight]; a "
                                     "feature of the same name is replaced, not doubled. For the CSLM in the "
                                     "built-in decoder: --line 'CSLM name=CSLM0 path=cslm/best.pt' --weight 0.5 "
                                     "(a real Moses has no CSLM feature: rescore its n-best lists with "
                                     "'rescorer cslm-rescore').")
    af.add_argument("--ini", required=True)
    af.add_argument("--line", required=True, metavar="'KIND name=NAME key=value ...'")
    af.add_argument("--weight", type=float, nargs="+", required=True, help="start weight(s)")
    af.add_argument("--out", required=True)
    af.add_argument("--overwrite", action="store_true")
    rf = isub.add_parser("remove-feature", parents=[common], help="remove a feature line and its weights")
    rf.add_argument("--ini", required=True)
    rf.add_argument("--name", required=True, help="name= of the feature, e.g. CSLM0")
    rf.add_argument("--out", required=True)
    rf.add_argument("--overwrite", action="store_true")
    sw = isub.add_parser("set-weights", parents=[common], help="set weights, e.g. from a tuning result",
                         description="Set weight lines: each --weight is a line as in [weight], 'LM0= 0.5'.")
    sw.add_argument("--ini", required=True)
    sw.add_argument("--weight", action="append", required=True, metavar="'NAME= V ...'")
    sw.add_argument("--out", required=True)
    sw.add_argument("--overwrite", action="store_true")
    def decoder_opts(q):
        g = q.add_argument_group("search (defaults: Moses's)")
        g.add_argument("--stack-size", type=int, default=200, help="hypotheses kept per stack (Moses -s, 200)")
        g.add_argument("--pop-limit", type=int, default=1000, help="cube-pruning pop limit (1000)")
        g.add_argument("--distortion-limit", type=int, help="default: the ini's [distortion-limit], else 6")
        g.add_argument("--table-limit", type=int, help="default: the table's table-limit=, else 20")
        g.add_argument("--threads", type=int, help="decoder processes (default: all cores)")
        g.add_argument("--moses-bin", help="a real Moses (binary or its directory; or $MOSES): use it instead")

    d = sub.add_parser("decode", parents=[common], help="translate a tokenised file with a moses.ini",
                       description="Phrase-based decoding with the built-in decoder (or a real Moses): "
                                   "the 1-best to --output, and Moses-format n-best lists on request.")
    d.add_argument("--ini", required=True, help="moses.ini (PhraseDictionaryMemory, KENLM, Distortion, "
                                                 "LexicalReordering msd-bidirectional-fe, penalties)")
    d.add_argument("--input", required=True, help="tokenised, truecased source text, one sentence per line")
    d.add_argument("--output", required=True, help="1-best translations")
    d.add_argument("--n-best-list", nargs=2, metavar=("FILE", "N"), help="write N-best lists in Moses's format")
    d.add_argument("--segmentation", action="store_true", help="add the source-target spans field to n-best lines")
    d.add_argument("--overwrite", action="store_true")
    decoder_opts(d)

    t = sub.add_parser("tune", parents=[common], help="MERT: tune the weights of a moses.ini on a dev set",
                       description="Och's MERT with exact line search over n-best lists accumulated across "
                                   "iterations (100-best, up to 25 iterations, 20 random restarts, as "
                                   "mert-moses.pl); writes a copy of the ini with the tuned weights.")
    t.add_argument("--ini", required=True)
    t.add_argument("--input", required=True, help="tokenised source side of the tuning set")
    t.add_argument("--ref", required=True, help="tokenised reference, the same preprocessing as the output")
    t.add_argument("--out-ini", required=True, help="moses.ini with the tuned weights")
    t.add_argument("--nbest", type=int, default=100)
    t.add_argument("--max-iter", type=int, default=25)
    t.add_argument("--restarts", type=int, default=20)
    t.add_argument("--range", action="append", default=[], metavar="NAME=LO,HI",
                   help="bounds for a feature's weights, e.g. 'LM0=0,inf' or 'WordPenalty0=-3,3' (repeatable). "
                        "Default: weights of log-probability features (TranslationModel, LM, "
                        "LexicalReordering, added neural columns) and Distortion stay >= 0; penalties are free")
    t.add_argument("--log", help="JSON record of every iteration (default: OUT_INI.tune.json)")
    t.add_argument("--state", help="n-best pool, weights and log, saved after every iteration "
                                   "(default: OUT_INI.mert.npz)")
    t.add_argument("--resume", action="store_true",
                   help="continue from --state after its last finished iteration (as mert-moses.pl --continue); "
                        "--max-iter may be raised")
    t.add_argument("--overwrite", action="store_true", help="replace OUT_INI, and start afresh over an old --state")
    decoder_opts(t)

    e = sub.add_parser("evaluate", parents=[common], help="BLEU with sacrebleu on detokenised output; "
                       "paired bootstrap against a baseline",
                       description="Detruecase and detokenise decoder output (sacremoses), then BLEU with "
                                   "sacrebleu against raw references; its signature is printed.")
    e.add_argument("--hyp", required=True, help="decoder output (tokenised, truecased)")
    e.add_argument("--ref", required=True, help="raw reference text")
    e.add_argument("--baseline", help="another system's output: paired bootstrap resampling against it")
    e.add_argument("--lang", default="fr", help="output language for detokenisation (default fr)")
    e.add_argument("--no-postprocess", action="store_true", help="score the output as it is")
    e.add_argument("--samples", type=int, default=1000, help="bootstrap samples (default 1000)")

    c = sub.add_parser("cslm-train", parents=[common], help="train the CSLM (feed-forward n-gram LM) on target text",
                       description="Train Schwenk's continuous-space language model on tokenised target "
                                   "text: every word and each sentence's </s> is an n-gram; 0.1% of the "
                                   "sentences held out; perplexity, checkpoints (OUT/last.pt, OUT/best.pt), "
                                   "curves (OUT/curves.png), --resume. CPU or CUDA.")
    c.add_argument("--text", required=True, nargs="+", help="tokenised target text files (plain or .gz)")
    cv = c.add_mutually_exclusive_group(required=True)
    cv.add_argument("--vocab", help="shortlist: a vocabulary file such as VOCAB_DIR/target.vocab "
                                    "(the RNN's target shortlist) or a directory holding target.vocab")
    cv.add_argument("--shortlist", type=int, help="make a shortlist of this size from the text (OUT/target.vocab)")
    c.add_argument("--out", required=True, help="run directory")
    c.add_argument("--order", type=int, default=7, help="n of the n-grams (default 7, the paper's)")
    c.add_argument("--embed", type=int, default=512, help="projection size per context word (default 512)")
    c.add_argument("--hidden", type=int, nargs="+", default=[1536, 1024],
                   help="sizes of the rectified layers (default 1536 1024)")
    _add_training_options(c, "n-grams", 128, "the sentences")
    c.add_argument("--optimizer", choices=["sgd", "adam", "adadelta"], default="sgd",
                   help="plain SGD as Schwenk's toolkit (default), Adam or Adadelta")
    c.add_argument("--lr", type=float, help="learning rate (default 0.1 for SGD, 1e-3 for Adam, 1.0 for Adadelta)")
    c.add_argument("--seed", type=int, default=1234)
    c.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1 ...")

    cs = sub.add_parser("cslm-score", parents=[common], help="ln-probability of every sentence of a file under a CSLM",
                        description="Write ln p(sentence </s>) (natural log, as Moses's LM features) of each "
                                    "line of a tokenised file, one number per line.")
    cs.add_argument("--model", required=True, help="checkpoint from 'rescorer cslm-train' (run/best.pt)")
    cs.add_argument("--input", required=True, help="tokenised text, one sentence per line")
    cs.add_argument("--output", required=True, help="scores, one per line")
    cs.add_argument("--overwrite", action="store_true")
    cs.add_argument("--device", default="auto")

    cr = sub.add_parser("cslm-rescore", parents=[common], help="add the CSLM score to every hypothesis of a Moses n-best list",
                        description="Append 'CSLM0= ln p(hypothesis </s>)' to the feature field of every line "
                                    "of a Moses n-best list (from Moses or 'rescorer decode'); every other "
                                    "byte is kept. Tune with the new feature's weight, then re-rank.")
    cr.add_argument("--model", required=True, help="checkpoint from 'rescorer cslm-train'")
    cr.add_argument("--nbest", required=True, help="Moses n-best list")
    cr.add_argument("--out", required=True, help="n-best list with the new feature")
    cr.add_argument("--name", default="CSLM0", help="feature name (default CSLM0)")
    cr.add_argument("--overwrite", action="store_true")
    cr.add_argument("--device", default="auto")
    return p


def _read_lines(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def _decoder(a: argparse.Namespace, sentences: list[str]):
    from moses_integration.decoder import DecoderConfig
    from moses_integration.runner import BuiltinDecoder, MosesDecoder, find_moses
    cfg = DecoderConfig(stack_size=a.stack_size, pop_limit=a.pop_limit, distortion_limit=a.distortion_limit,
                        table_limit=a.table_limit)
    builtin = BuiltinDecoder(a.ini, sentences, cfg, a.threads, progress=not a.quiet)
    if a.moses_bin or os.environ.get("MOSES"):
        moses = find_moses(a.moses_bin)
        if moses is None:
            raise FileNotFoundError(f"no moses binary at {a.moses_bin or os.environ.get('MOSES')}")
        log.info("decoding with the real Moses at %s", moses)
        return builtin, MosesDecoder(moses, a.ini, sentences, builtin.layout, a.threads)
    return builtin, builtin


def cmd_decode(a: argparse.Namespace) -> int:
    from .fileio import check_can_write
    check_can_write(a.output, a.overwrite)
    if a.moses_bin or os.environ.get("MOSES"):  # refuse before loading any table
        raise RuntimeError("decode with a real Moses: run moses itself; --moses-bin is for 'tune'")
    sentences = _read_lines(a.input)
    builtin, _ = _decoder(a, sentences)
    n = int(a.n_best_list[1]) if a.n_best_list else 1
    results = builtin.translate(nbest=n)  # -q reached the decoder in _decoder
    builtin.write(results, a.output, a.n_best_list[0] if a.n_best_list else None, a.segmentation)
    log.info("%s: %d sentences translated", a.output, len(results))
    return 0


def weight_ranges(groups, specs: list[str]):
    """Bounds per weight: ``default_ranges`` overridden by ``NAME=LO,HI`` options."""
    from moses_integration.mert import default_ranges
    lower, upper = default_ranges(groups)
    start = {}
    a = 0
    for name, n, _ in groups:
        start[name] = (a, a + n)
        a += n
    for spec in specs:
        name, _, rng = spec.partition("=")
        try:
            lo, hi = (float(x) for x in rng.split(","))
        except ValueError:
            raise ValueError(f"--range {spec!r}: expected NAME=LO,HI, e.g. LM0=0,inf") from None
        if name not in start:
            raise ValueError(f"--range {spec!r}: no feature {name!r} (features: {', '.join(start)})")
        if lo > hi:
            raise ValueError(f"--range {spec!r}: LO > HI")
        lower[start[name][0]:start[name][1]], upper[start[name][0]:start[name][1]] = lo, hi
    return lower, upper


def cmd_tune(a: argparse.Namespace) -> int:
    import json
    import numpy as np
    from moses_integration.mert import tune
    from moses_integration.moses_ini import MosesIni
    from .fileio import OutputExistsError, atomic_write, check_can_write
    check_can_write(a.out_ini, a.overwrite)
    state = a.state or a.out_ini + ".mert.npz"
    if not a.resume and os.path.exists(state) and not a.overwrite:
        raise OutputExistsError(f"{state} exists (an earlier tuning run): pass --resume to continue it "
                                "or --overwrite to start again")
    sentences, refs = _read_lines(a.input), _read_lines(a.ref)
    if len(sentences) != len(refs):
        raise ValueError(f"{a.input}: {len(sentences)} lines but {a.ref} has {len(refs)}")
    builtin, dec = _decoder(a, sentences)
    layout = builtin.layout
    tunable = np.concatenate([np.full(n, not name.startswith("UnknownWordPenalty"))
                              for name, n, _ in layout.groups])
    lower, upper = weight_ranges(layout.groups, a.range)
    res = tune(dec.nbest_lists, [r.split() for r in refs], builtin.model.weights.copy(), tunable,
               nbest=a.nbest, max_iter=a.max_iter, restarts=a.restarts, lower=lower, upper=upper,
               processes=a.threads or os.cpu_count() or 1, state=state, resume=a.resume)
    ini = MosesIni.read(a.ini)
    sl = layout.slices()
    ini.set_weights({name: list(res.weights[sl[name]]) for name, _, _ in layout.groups
                     if name in ini.weights()})
    ini.write(a.out_ini)
    with atomic_write(a.log or a.out_ini + ".tune.json", "w") as f:
        json.dump(res.history, f, indent=1)
    for r in res.history:
        log.info("iteration %d: dev BLEU %.2f", r["iteration"], r["dev_bleu"])
    log.info("tuned weights written to %s", a.out_ini)
    return 0


def cmd_evaluate(a: argparse.Namespace) -> int:
    from moses_integration.evaluate import corpus_bleu, paired_bootstrap, postprocess
    hyps, refs = _read_lines(a.hyp), _read_lines(a.ref)
    if not a.no_postprocess:
        hyps = postprocess(hyps, a.lang)
    score, text, sig = corpus_bleu(hyps, refs)
    print(f"{text}\n{sig}")
    if a.baseline:
        base = _read_lines(a.baseline)
        if not a.no_postprocess:
            base = postprocess(base, a.lang)
        r = paired_bootstrap(base, hyps, refs, a.samples)
        lo, hi = r["system_95ci"]
        print(f"paired bootstrap ({r['samples']} samples): baseline {r['baseline']:.2f}, system "
              f"{r['system']:.2f} (95% CI {lo:.2f}-{hi:.2f}), p = {r['p_value']:.4f}")
    return 0


def cmd_ini(a: argparse.Namespace) -> int:
    from moses_integration.moses_ini import MosesIni, count_dense_scores
    from .fileio import check_can_write
    check_can_write(a.out, a.overwrite)
    ini = MosesIni.read(a.ini)
    if a.ini_command == "set-table":
        n = count_dense_scores(a.path)
        ini.set_table(a.feature, a.path, n, a.start_weight)
        log.info("%s: %s now reads %s with %d dense scores", a.out, a.feature, a.path, n)
    elif a.ini_command == "add-feature":
        ini.add_feature(a.line, a.weight)
    elif a.ini_command == "remove-feature":
        ini.remove_feature(a.name)
    else:
        weights = {}
        for w in a.weight:
            name, _, vals = w.partition("=")
            weights[name.strip()] = [float(v) for v in vals.split()]
        ini.set_weights(weights)
    ini.write(a.out)
    return 0


def cmd_vocab(a: argparse.Namespace) -> int:
    from .fileio import check_can_write
    from .vocab import Vocabulary, count_table_words
    for name in ("source.vocab", "target.vocab"):
        check_can_write(os.path.join(a.out, name), a.overwrite)
    src, tgt, n = count_table_words(a.phrase_table, progress=not a.quiet)
    for side, counts, size in (("source", src, a.source_size or a.size), ("target", tgt, a.target_size or a.size)):
        voc = Vocabulary.from_counts(counts, size)
        voc.save(os.path.join(a.out, f"{side}.vocab"))
        total = sum(counts.values())
        covered = sum(voc.counts)
        log.info("%s: %d of %d word types kept, covering %.1f%% of the %d running words of %d pairs",
                 side, len(voc) - 2, len(counts), 100.0 * covered / max(total, 1), total, n)
    return 0


def cmd_train(a: argparse.Namespace) -> int:
    from .model import ModelConfig
    from .runtime import resolve_device, setup_logging
    from .trainer import TrainConfig, Trainer
    from .vocab import load_vocab_dir
    setup_logging(os.path.join(a.out, "train.log"), a.verbose)
    src_vocab, tgt_vocab = load_vocab_dir(a.vocab)
    if a.inverse:
        src_vocab, tgt_vocab = tgt_vocab, src_vocab
    mcfg = ModelConfig(len(src_vocab), len(tgt_vocab), a.hidden, a.rank, a.maxout_units, a.maxout_pool, a.gate)
    tcfg = TrainConfig(batch_size=a.batch_size, valid_every=a.valid_every, patience=a.patience,
                       checkpoint_minutes=a.checkpoint_minutes, max_minutes=a.max_minutes,
                       max_epochs=a.max_epochs, max_updates=a.max_updates, valid_fraction=a.valid_fraction,
                       buckets=a.buckets, seed=a.seed, inverse=a.inverse,
                       optimizer=a.optimizer, lr=a.lr)
    trainer = Trainer(a.phrase_table, src_vocab, tgt_vocab, a.out, mcfg, tcfg, resolve_device(a.device),
                      resume=a.resume, overwrite=a.overwrite, progress=not a.quiet)
    trainer.train()
    return 0


def cmd_score(a: argparse.Namespace) -> int:
    from .checkpoint import check_vocab_matches
    from .runtime import resolve_device
    from .score_table import score_table
    from .scorer import PhraseScorer
    from .vocab import load_vocab_dir
    scorer = PhraseScorer.load(a.model, resolve_device(a.device))
    if a.vocab:
        sv, tv = load_vocab_dir(a.vocab)
        if scorer.inverse:
            sv, tv = tv, sv
        check_vocab_matches(a.model, scorer.src_vocab, sv, "source")
        check_vocab_matches(a.model, scorer.tgt_vocab, tv, "target")
    log.info("scoring %s with %s (%s) on %s", a.phrase_table, a.model,
             "log p(source | target)" if scorer.inverse else "log p(target | source)", scorer.device)
    score_table(scorer, a.phrase_table, a.out, model_path=a.model, unk_count=a.unk_count, resume=a.resume,
                overwrite=a.overwrite, chunk_lines=a.chunk_lines, progress=not a.quiet)
    return 0


def cmd_cslm_train(a: argparse.Namespace) -> int:
    from .cslm import CSLMConfig
    from .ngrams import iter_sentences
    from .runtime import resolve_device, setup_logging
    from .trainer import CSLMTrainer, TrainConfig
    from .vocab import Vocabulary
    setup_logging(os.path.join(a.out, "train.log"), a.verbose)
    if a.shortlist:
        path = os.path.join(a.out, "target.vocab")
        if os.path.exists(path) and (a.resume or not a.overwrite):
            vocab = Vocabulary.load(path)
        else:
            from collections import Counter
            counts: Counter = Counter()
            for _, _, words in iter_sentences(a.text):
                counts.update(words)
            vocab = Vocabulary.from_counts(counts, a.shortlist)
            os.makedirs(a.out, exist_ok=True)
            vocab.save(path)
    else:
        path = os.path.join(a.vocab, "target.vocab") if os.path.isdir(a.vocab) else a.vocab
        vocab = Vocabulary.load(path)
    mcfg = CSLMConfig(len(vocab), a.order, a.embed, tuple(a.hidden))
    tcfg = TrainConfig(batch_size=a.batch_size, valid_every=a.valid_every, patience=a.patience,
                       checkpoint_minutes=a.checkpoint_minutes, max_minutes=a.max_minutes,
                       max_epochs=a.max_epochs, max_updates=a.max_updates, valid_fraction=a.valid_fraction,
                       seed=a.seed, optimizer=a.optimizer, lr=a.lr)
    CSLMTrainer(a.text, vocab, a.out, mcfg, tcfg, resolve_device(a.device), resume=a.resume,
                overwrite=a.overwrite, progress=not a.quiet).train()
    return 0


def _cslm_scorer(a: argparse.Namespace):
    from .checkpoint import load_cslm_checkpoint
    from .cslm import CSLMScorer, OutOfShortlist
    from .runtime import resolve_device
    dev = resolve_device(a.device)
    ck = load_cslm_checkpoint(a.model, dev)
    return CSLMScorer(ck["model"], ck["vocab"], OutOfShortlist(ck["oos_counts"]), dev)


def cmd_cslm_score(a: argparse.Namespace) -> int:
    from .fileio import atomic_write, check_can_write
    check_can_write(a.output, a.overwrite)
    scorer = _cslm_scorer(a)
    scores = scorer.score_sentences([line.split() for line in _read_lines(a.input)])
    with atomic_write(a.output, "w") as f:
        for v in scores:
            f.write(f"{v:.6f}\n")
    log.info("%s: %d sentences, ln p summed %.2f", a.output, len(scores), float(scores.sum()))
    return 0


def cmd_cslm_rescore(a: argparse.Namespace) -> int:
    from moses_integration.nbest import add_feature
    from .fileio import check_can_write
    check_can_write(a.out, a.overwrite)
    scorer = _cslm_scorer(a)
    n = add_feature(a.nbest, a.out, a.name, lambda texts: [[v] for v in scorer.score_sentences(
        [t.split() for t in texts])])
    log.info("%s: %s= added to %d hypotheses", a.out, a.name, n)
    return 0


COMMANDS = {"vocab": cmd_vocab, "train": cmd_train, "score": cmd_score, "ini": cmd_ini,
            "decode": cmd_decode, "tune": cmd_tune, "evaluate": cmd_evaluate,
            "cslm-train": cmd_cslm_train, "cslm-score": cmd_cslm_score, "cslm-rescore": cmd_cslm_rescore}


def main(argv: list[str] | None = None) -> int:
    from .runtime import setup_logging
    a = build_parser().parse_args(argv)
    setup_logging(verbose=a.verbose)
    try:
        return COMMANDS[a.command](a)
    except (ValueError, OSError, RuntimeError) as e:  # our errors name the file and line
        if a.verbose:
            raise
        log.error("%s", e)
        return 1
    except KeyboardInterrupt:
        log.error("interrupted; rerun with --resume to continue")
        return 130


if __name__ == "__main__":
    sys.exit(main())
