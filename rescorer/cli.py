"""``rescorer``: train Cho et al.'s RNN Encoder-Decoder on a Moses phrase table and add its score.

    rescorer vocab --phrase-table model/phrase-table.gz --size 15000 --out vocab/
    rescorer train --phrase-table model/phrase-table.gz --vocab vocab/ --out run/ --max-minutes 60
    rescorer score --phrase-table model/phrase-table.gz --model run/best.pt --out phrase-table.rnn.gz
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
columns, add as many weights, and tune.
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
    t.add_argument("--resume", action="store_true", help="continue OUT/last.pt exactly where it stopped")
    t.add_argument("--overwrite", action="store_true", help="start again over an existing run")
    t.add_argument("--max-minutes", type=float, help="time budget (training time, summed over resumes)")
    t.add_argument("--max-epochs", type=int, help="stop after this many passes over the pairs")
    t.add_argument("--max-updates", type=int, help="stop after this many minibatches")
    t.add_argument("--batch-size", type=int, default=64, help="pairs per minibatch (default 64)")
    t.add_argument("--valid-every", type=int, default=1000, help="updates between validations (default 1000)")
    t.add_argument("--valid-fraction", type=float, default=0.001,
                   help="share of the unique pairs held out for validation (default 0.001)")
    t.add_argument("--patience", type=int, default=10,
                   help="stop after this many validations without improvement (default 10)")
    t.add_argument("--checkpoint-minutes", type=float, default=10.0, help="save OUT/last.pt this often (default 10)")
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
    i = sub.add_parser("ini", help="edit a moses.ini: point a table at a scored file, set weights",
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
    sw = isub.add_parser("set-weights", parents=[common], help="set weights, e.g. from a tuning result",
                         description="Set weight lines: each --weight is a line as in [weight], 'LM0= 0.5'.")
    sw.add_argument("--ini", required=True)
    sw.add_argument("--weight", action="append", required=True, metavar="'NAME= V ...'")
    sw.add_argument("--out", required=True)
    sw.add_argument("--overwrite", action="store_true")
    return p


def cmd_ini(a: argparse.Namespace) -> int:
    from moses_integration.moses_ini import MosesIni, count_dense_scores
    from .fileio import check_can_write
    check_can_write(a.out, a.overwrite)
    ini = MosesIni.read(a.ini)
    if a.ini_command == "set-table":
        n = count_dense_scores(a.path)
        ini.set_table(a.feature, a.path, n, a.start_weight)
        log.info("%s: %s now reads %s with %d dense scores", a.out, a.feature, a.path, n)
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


COMMANDS = {"vocab": cmd_vocab, "train": cmd_train, "score": cmd_score, "ini": cmd_ini}


def main(argv: list[str] | None = None) -> int:
    from .runtime import setup_logging
    a = build_parser().parse_args(argv)
    setup_logging(verbose=a.verbose)
    try:
        return COMMANDS[a.command](a)
    except (ValueError, OSError, RuntimeError) as e:  # our errors name the file and line
        log.error("%s", e)
        return 1
    except KeyboardInterrupt:
        log.error("interrupted; rerun with --resume to continue")
        return 130


if __name__ == "__main__":
    sys.exit(main())
