"""The ``rescorer`` program: every command of both packages, the same way as ``rescorer ...``
and ``python -m rescorer ...`` (how torchrun starts the ranks of a job).

This package's commands (``vocab``, ``train``, ``score``, ``inspect``, ``generate``, ``embed``,
``cslm-train``, ``cslm-score``) are registered here; other packages add theirs through the
``rescorer.commands`` entry point group (``moses_integration.cli:register`` adds ``ini``,
``decode``, ``tune``, ``evaluate``, ``cslm-rescore``, ``rerank``), so this package depends on
none of them.  A new command goes into the ``register`` of the package that owns what it runs.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from collections import Counter
from importlib.metadata import entry_points
from typing import Callable

from . import __version__
from .config import CELLS, GATES, CSLMConfig, ModelConfig, TrainConfig
from .fileio import atomic_write, check_can_write
from .ngrams import iter_sentences
from .runtime import BATCHINGS, PRECISIONS, TRAIN_PRECISIONS, add_device_option, resolve_device, setup_logging
from .text import read_lines
from .vocab import Vocabulary, count_table_words, load_vocab_dir

# The commands import the modules that need torch (training, scoring, distributed jobs, checkpoints)
# inside their handlers: the program starts without torch, and the decoder's commands never load it.

log = logging.getLogger("rescorer")

EPILOG_SCORE = """\
The new column holds exp(log p(target | source)), a probability-like value, because
Moses takes max(ln x, -100) of every dense score when it loads a table.  With
--unk-count a second new column holds exp(-n), n = words of the pair outside the
network's shortlists (the paper's WP feature): Moses sees -n, like its WordPenalty.
Then raise num-features of the table's feature line in moses.ini by the number of new
columns and add as many weights ('rescorer ini set-table' does both), and tune.

Several processes: --workers P on this machine, or one rank per process under
  torchrun [--nnodes M ...] --nproc-per-node P -m rescorer score ...
The table is planned into parts (OUT.parts.json), each rank scores its own into
OUT.part-K, and rank 0 joins them into OUT, the same bytes as one process; the output's
directory must be shared by every machine.  --resume continues with any number of
processes.
"""


def _add_model_sizes(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("network sizes (defaults: the paper's)")
    m = ModelConfig
    g.add_argument("--hidden", type=int, default=m.hidden, help=f"units of the encoder and decoder (default {m.hidden})")
    g.add_argument("--rank", type=int, default=m.rank,
                   help=f"rank of the input and output word matrices = embedding size (default {m.rank})")
    g.add_argument("--maxout-units", type=int, default=m.maxout_units,
                   help=f"maxout units of the deep output (default {m.maxout_units})")
    g.add_argument("--maxout-pool", type=int, default=m.maxout_pool,
                   help=f"pieces per maxout unit (default {m.maxout_pool})")
    g.add_argument("--gate", choices=GATES, default=m.gate,
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
    d = TrainConfig
    p.add_argument("--valid-every", type=int, default=d.valid_every,
                   help=f"updates between validations (default {d.valid_every}); 0: once per epoch, so that --patience "
                        "counts epochs as the paper's CSLM training did")
    p.add_argument("--valid-fraction", type=float, default=d.valid_fraction,
                   help=f"share of {held_out} held out for validation (default {d.valid_fraction})")
    p.add_argument("--patience", type=int, default=d.patience,
                   help=f"stop after this many validations without improvement (default {d.patience})")
    p.add_argument("--lr-decay", type=float, default=d.lr_decay, metavar="F",
                   help="multiply the learning rate by F when --lr-patience validations in a row have not "
                        "improved (torch's ReduceLROnPlateau; default 1: a constant learning rate)")
    p.add_argument("--lr-patience", type=int, default=d.lr_patience, metavar="N",
                   help=f"validations without improvement before each decay (default {d.lr_patience})")
    p.add_argument("--checkpoint-minutes", type=float, default=d.checkpoint_minutes,
                   help=f"save OUT/last.pt this often (default {d.checkpoint_minutes:g})")
    p.add_argument("--precision", choices=TRAIN_PRECISIONS, default=d.precision,
                   help="fp32 (default); bf16: the matrix products of training in bfloat16 (torch.autocast) with "
                        "fp32 master weights and an fp32 validation, faster on CPUs with AVX-512 BF16 or AMX "
                        "(warned against elsewhere); the checkpoints are fp32 either way")
    p.add_argument("--sampled-softmax", type=int, default=d.sampled_softmax, metavar="K",
                   help="train with a softmax over each minibatch's target words and K words drawn uniformly "
                        "from the shortlist (importance sampling, Jean et al. 2015) instead of all of it: fewer "
                        "operations per predicted word; validation, checkpoints and scoring keep the full "
                        "softmax (default 0: the full softmax in training too)")
    p.add_argument("--workers", type=int, default=1, metavar="P",
                   help="train with P processes on this machine (torchrun --standalone), each computing the "
                        "gradient of a share of every minibatch; under torchrun the command is one rank of the "
                        "job and this option is ignored")



def _train_config(a: argparse.Namespace, **extra):
    """The TrainConfig of a training command: the options ``_add_training_options`` adds, the
    optimizer, learning rate and seed every training command has, and ``extra``."""
    return TrainConfig(batch_size=a.batch_size, valid_every=a.valid_every, patience=a.patience,
                       lr_decay=a.lr_decay, lr_patience=a.lr_patience, checkpoint_minutes=a.checkpoint_minutes,
                       max_minutes=a.max_minutes, max_epochs=a.max_epochs, max_updates=a.max_updates,
                       valid_fraction=a.valid_fraction, seed=a.seed, optimizer=a.optimizer, lr=a.lr,
                       precision=a.precision, sampled_softmax=a.sampled_softmax, **extra)


def build_parser(*registrars: Callable[[argparse._SubParsersAction, argparse.ArgumentParser], None],
                 description: str = __doc__) -> argparse.ArgumentParser:
    """The ``rescorer`` parser with the subcommands each registrar adds (``register`` here)."""
    p = argparse.ArgumentParser(prog="rescorer", description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    common.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in registrars:
        register(sub, common)
    return p


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """This package's subcommands, each with its handler."""
    v = sub.add_parser("vocab", parents=[common], help="shortlist vocabularies of both sides of a phrase table",
                       description="Count the words of both sides over the pairs of a phrase table and keep "
                                   "the most frequent as the networks' shortlists (</s> and [UNK] included).")
    v.add_argument("--phrase-table", required=True, help="Moses phrase table, plain or gzipped")
    v.add_argument("--size", type=int, default=15000, help="shortlist size per language (default 15000)")
    v.add_argument("--source-size", type=int, help="source shortlist size (default --size)")
    v.add_argument("--target-size", type=int, help="target shortlist size (default --size)")
    v.add_argument("--output", "--out", dest="out", required=True, help="directory for source.vocab and target.vocab")
    v.add_argument("--overwrite", action="store_true", help="replace existing vocabularies")

    t = sub.add_parser("train", parents=[common], help="train the RNN Encoder-Decoder on the unique pairs of a table",
                       description="Train on the unique phrase pairs of a Moses table (counts ignored, as in "
                                   "the paper): Adadelta, clipping at 1, validation perplexity, checkpoints "
                                   "(OUT/last.pt, OUT/best.pt), curves (OUT/curves.png). CPU or CUDA.")
    t.add_argument("--phrase-table", required=True, help="Moses phrase table, plain or gzipped")
    t.add_argument("--vocab", required=True, help="directory made by 'rescorer vocab'")
    t.add_argument("--output", "--out", dest="out", required=True, help="run directory")
    t.add_argument("--inverse", action="store_true",
                   help="train on swapped pairs: the model gives p(source | target)")
    _add_training_options(t, "pairs", TrainConfig.batch_size, "the unique pairs")
    t.add_argument("--buckets", type=int, default=TrainConfig.buckets,
                   help=f"shuffle buckets on disk; each must fit in memory (default {TrainConfig.buckets})")
    t.add_argument("--batching", choices=BATCHINGS, default=TrainConfig.batching,
                   help="uniform (default): minibatches of uniformly drawn pairs, sorted by length in groups of "
                        "10 (GroundHog's); by-source: runs of up to --per-source targets of one source, scored "
                        "as prefix trees (the encoder once per source, each shared target prefix once): fewer "
                        "operations per pair, the same loss and gradients for the same minibatch")
    t.add_argument("--per-source", type=int, default=TrainConfig.per_source, metavar="N",
                   help=f"by-source batching: at most N targets of one source in a run (default {TrainConfig.per_source})")
    t.add_argument("--optimizer", choices=["adadelta", "adam"], default=TrainConfig.optimizer,
                   help="Adadelta (rho 0.95, eps 1e-6) as the paper (default), or Adam")
    t.add_argument("--lr", type=float, help="learning rate (default 1.0 for Adadelta, 1e-3 for Adam)")
    t.add_argument("--seed", type=int, default=TrainConfig.seed)
    add_device_option(t)
    _add_model_sizes(t)

    s = sub.add_parser("score", parents=[common], help="add the model's score as a new column of a phrase table",
                       description="Append exp(log p(target | source)) to the scores of every line of a "
                                   "Moses phrase table; every other field is kept byte for byte.",
                       epilog=EPILOG_SCORE, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--phrase-table", required=True, help="Moses phrase table, plain or gzipped")
    s.add_argument("--model", required=True, help="checkpoint from 'rescorer train' (run/best.pt)")
    s.add_argument("--output", "--out", dest="out", required=True, help="output table (gzipped when the name ends in .gz)")
    s.add_argument("--unk-count", action="store_true",
                   help="also append exp(-n), n = words outside the shortlists (the paper's WP feature)")
    s.add_argument("--resume", action="store_true", help="continue an interrupted run (same bytes)")
    s.add_argument("--overwrite", action="store_true", help="replace an existing output")
    s.add_argument("--vocab", help="check that the model's vocabularies are the ones in this directory")
    s.add_argument("--chunk-lines", type=int, default=4096, help="lines scored at once (default 4096)")
    add_device_option(s)
    s.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="fp32 (default, exact); bf16 (matrix products in bfloat16: faster only on CPUs with AMX "
                        "or AVX-512 BF16) or int8 (the matrices quantised, CPU: faster on AVX2 too, more with VNNI): "
                        "approximate scores (experiments/bench_score.py --precision measures speed and score "
                        "differences on your CPU)")
    s.add_argument("--workers", type=int, default=1, metavar="P",
                   help="score with P processes on this machine (torchrun --standalone); under torchrun the "
                        "command is one rank of the job and this option is ignored (see the README)")
    v.set_defaults(handler=cmd_vocab)
    t.add_argument("--cell", choices=CELLS, default=ModelConfig.cell,
                   help="recurrent unit of encoder and decoder: the paper's gated unit (default), or an LSTM "
                        "or a plain tanh unit for comparison")
    t.set_defaults(handler=cmd_train)
    s.set_defaults(handler=cmd_score)

    c = sub.add_parser("cslm-train", parents=[common], help="train the CSLM (feed-forward n-gram LM) on target text",
                       description="Train Schwenk's continuous-space language model on tokenised target "
                                   "text: every word and each sentence's </s> is an n-gram; 0.1% of the "
                                   "sentences held out; perplexity, checkpoints (OUT/last.pt, OUT/best.pt), "
                                   "curves (OUT/curves.png), --resume. CPU or CUDA.")
    c.add_argument("--input", "--text", dest="text", required=True, nargs="+", help="tokenised target text files (plain or .gz)")
    cv = c.add_mutually_exclusive_group(required=True)
    cv.add_argument("--vocab", help="shortlist: a vocabulary file such as VOCAB_DIR/target.vocab "
                                    "(the RNN's target shortlist) or a directory holding target.vocab")
    cv.add_argument("--shortlist", type=int, help="make a shortlist of this size from the text (OUT/target.vocab)")
    c.add_argument("--output", "--out", dest="out", required=True, help="run directory")
    cc = CSLMConfig
    c.add_argument("--order", type=int, default=cc.order, help=f"n of the n-grams (default {cc.order}, the paper's)")
    c.add_argument("--embed", type=int, default=cc.embed,
                   help=f"projection size per context word (default {cc.embed})")
    c.add_argument("--hidden", type=int, nargs="+", default=list(cc.hidden),
                   help=f"sizes of the rectified layers (default {' '.join(map(str, cc.hidden))})")
    _add_training_options(c, "n-grams", 128, "the sentences")
    c.add_argument("--optimizer", choices=["sgd", "adam", "adadelta"], default="sgd",
                   help="plain SGD as Schwenk's toolkit (default), Adam or Adadelta")
    c.add_argument("--lr", type=float, help="learning rate (default 0.1 for SGD, 1e-3 for Adam, 1.0 for Adadelta)")
    c.add_argument("--seed", type=int, default=TrainConfig.seed)
    add_device_option(c)

    cs = sub.add_parser("cslm-score", parents=[common], help="ln-probability of every sentence of a file under a CSLM",
                        description="Write ln p(sentence </s>) (natural log, as Moses's LM features) of each "
                                    "line of a tokenised file, one number per line.")
    cs.add_argument("--model", required=True, help="checkpoint from 'rescorer cslm-train' (run/best.pt)")
    cs.add_argument("--input", required=True, help="tokenised text, one sentence per line")
    cs.add_argument("--output", required=True, help="scores, one per line")
    cs.add_argument("--overwrite", action="store_true")
    add_device_option(cs)

    c.set_defaults(handler=cmd_cslm_train)
    cs.set_defaults(handler=cmd_cslm_score)

    n = sub.add_parser("inspect", parents=[common], help="a source phrase's best targets by the table and by the RNN",
                       description="For each source phrase, its top-k target phrases by the phrase table's "
                                   "p(target | source) and by the RNN score, side by side, both scores on every "
                                   "row (the paper's Table 2). The table is read once for all sources; a source "
                                   "the table does not hold gets the phrases the network generates itself.")
    n.add_argument("--model", required=True, help="checkpoint from 'rescorer train'")
    n.add_argument("--phrase-table", required=True, help="Moses phrase table, plain or gzipped")
    n.add_argument("--source", action="append", default=[], help="a source phrase (repeatable)")
    n.add_argument("--sources", help="a file of source phrases, one per line")
    n.add_argument("-k", type=int, default=10, help="rows per ranking (default 10)")
    n.add_argument("--column", type=int, default=3,
                   help="the table's score to rank by, 1-based (default 3: p(target | source), Moses's phi(e|f))")
    n.add_argument("--known-targets", action="store_true",
                   help="leave targets with words outside the network's shortlist out of the RNN's ranking "
                        "(each such word is scored as [UNK])")
    n.add_argument("--format", choices=["md", "tsv"], default="md")
    add_device_option(n)
    n.set_defaults(handler=cmd_inspect)

    g = sub.add_parser("generate", parents=[common], help="target phrases from the network alone (beam search)",
                       description="The most probable target phrases of a source phrase under the network, by "
                                   "beam search over the target shortlist ([UNK] excluded), with their "
                                   "log-probabilities (</s> included); no phrase table involved.")
    g.add_argument("--model", required=True, help="checkpoint from 'rescorer train'")
    g.add_argument("--source", action="append", default=[], required=True, help="a source phrase (repeatable)")
    g.add_argument("--beam", type=int, default=10, help="prefixes kept per step (default 10)")
    g.add_argument("-n", type=int, default=10, help="phrases to print (default 10)")
    g.add_argument("--max-len", type=int, default=10, help="longest phrase in words (default 10)")
    add_device_option(g)
    g.set_defaults(handler=cmd_generate)

    m = sub.add_parser("embed", parents=[common], help="2-D maps (t-SNE) of the learned word embeddings and phrase summaries",
                       description="Barnes-Hut t-SNE (scikit-learn) of the source word embeddings e(x) of the "
                                   "most frequent words and of the summaries c of the source phrases with the "
                                   "most translations in the table: OUT/words.png, OUT/phrases.png (a legible "
                                   "labelled subset) and OUT/*.tsv (every point).")
    m.add_argument("--model", required=True, help="checkpoint from 'rescorer train'")
    m.add_argument("--phrase-table", help="Moses phrase table: the source phrases of the phrase map")
    m.add_argument("--output", "--out", dest="out", required=True, help="directory for the maps")
    m.add_argument("--words", type=int, default=1000, help="most frequent source words mapped (default 1000)")
    m.add_argument("--phrases", type=int, default=2000, help="source phrases mapped (default 2000)")
    m.add_argument("--min-words", type=int, default=2, help="shortest phrase on the phrase map (default 2)")
    m.add_argument("--seed", type=int, default=0)
    add_device_option(m)
    m.set_defaults(handler=cmd_embed)


def cmd_vocab(a: argparse.Namespace) -> int:
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


def _training_job(a: argparse.Namespace) -> bool:
    """True when this process trains (alone or as one rank); False when ``--workers`` has started the
    ranks and they are done.  Logs go to OUT/train.log from rank 0 only."""
    from . import distributed
    if a.workers < 1:
        raise ValueError(f"--workers {a.workers}: give at least 1")
    if a.workers > 1 and not distributed.launched():
        setup_logging(verbose=a.verbose)
        distributed.run_workers(a.workers, "rescorer", a.argv, output=os.path.join(a.out, "summary.json"))
        return False
    if distributed.this_rank().main:
        setup_logging(os.path.join(a.out, "train.log"), a.verbose)
    else:
        for name in ("rescorer", "moses_integration"):
            logging.getLogger(name).setLevel(logging.WARNING)
    return True


def cmd_train(a: argparse.Namespace) -> int:
    from . import distributed
    from .trainer import Trainer
    tcfg = _train_config(a, buckets=a.buckets, inverse=a.inverse, batching=a.batching, per_source=a.per_source)
    src_vocab, tgt_vocab = load_vocab_dir(a.vocab)
    if a.inverse:
        src_vocab, tgt_vocab = tgt_vocab, src_vocab
    tcfg.check(len(tgt_vocab))  # before any process starts or any data is read
    if not _training_job(a):
        return 0
    mcfg = ModelConfig(len(src_vocab), len(tgt_vocab), a.hidden, a.rank, a.maxout_units, a.maxout_pool, a.gate,
                       a.cell)
    device = resolve_device(a.device)
    with distributed.process_group(device):
        Trainer(a.phrase_table, src_vocab, tgt_vocab, a.out, mcfg, tcfg, device, resume=a.resume,
                overwrite=a.overwrite, progress=not a.quiet).train()
    return 0


def cmd_score(a: argparse.Namespace) -> int:
    from . import distributed
    from .checkpoint import check_vocab_matches
    from .score_table import score_table, score_table_parts, unfinished_parts
    from .scorer import PhraseScorer
    if a.workers < 1:
        raise ValueError(f"--workers {a.workers}: give at least 1")
    if a.workers > 1 and not distributed.launched():
        return distributed.run_workers(a.workers, "rescorer", a.argv,
                                       lambda rank: unfinished_parts(a.out, rank, a.workers), output=a.out)
    device = resolve_device(a.device)
    rank = distributed.this_rank()
    scorer = PhraseScorer.load(a.model, distributed.rank_device(device, rank), precision=a.precision)
    if a.vocab:
        sv, tv = load_vocab_dir(a.vocab)
        if scorer.inverse:
            sv, tv = tv, sv
        check_vocab_matches(a.model, scorer.src_vocab, sv, "source")
        check_vocab_matches(a.model, scorer.tgt_vocab, tv, "target")
    log.info("scoring %s with %s (%s) on %s", a.phrase_table, a.model,
             "log p(source | target)" if scorer.inverse else "log p(target | source)", scorer.device)
    opts = dict(model_path=a.model, unk_count=a.unk_count, resume=a.resume, overwrite=a.overwrite,
                chunk_lines=a.chunk_lines, progress=not a.quiet)
    if not distributed.launched():
        score_table(scorer, a.phrase_table, a.out, **opts)
        return 0
    with distributed.process_group(device) as rank:
        score_table_parts(scorer, a.phrase_table, a.out, rank.rank, rank.world, distributed.barrier, **opts)
    return 0


def cmd_cslm_train(a: argparse.Namespace) -> int:
    from . import distributed
    _train_config(a).check(a.shortlist)  # before any process starts or any data is read (--vocab: by the trainer)
    if not _training_job(a):
        return 0
    device = resolve_device(a.device)
    with distributed.process_group(device) as rank:
        if a.shortlist:
            path = os.path.join(a.out, "target.vocab")
            if rank.main and not (os.path.exists(path) and (a.resume or not a.overwrite)):
                counts: Counter = Counter()
                for _, _, words in iter_sentences(a.text):
                    counts.update(words)
                os.makedirs(a.out, exist_ok=True)
                Vocabulary.from_counts(counts, a.shortlist).save(path)
            distributed.barrier()  # made once, by rank 0
        else:
            path = os.path.join(a.vocab, "target.vocab") if os.path.isdir(a.vocab) else a.vocab
        vocab = Vocabulary.load(path)
        _cslm_train(a, vocab, device)
    return 0


def _cslm_train(a: argparse.Namespace, vocab, device) -> None:
    from .trainer import CSLMTrainer
    mcfg = CSLMConfig(len(vocab), a.order, a.embed, tuple(a.hidden))
    tcfg = _train_config(a)
    CSLMTrainer(a.text, vocab, a.out, mcfg, tcfg, device, resume=a.resume, overwrite=a.overwrite,
                progress=not a.quiet).train()


def cslm_scorer(a: argparse.Namespace):
    """The CSLM of ``--model`` on ``--device``, ready to score sentences."""
    from .cslm import CSLMScorer
    return CSLMScorer.load(a.model, resolve_device(a.device))


def cmd_cslm_score(a: argparse.Namespace) -> int:
    check_can_write(a.output, a.overwrite)
    scorer = cslm_scorer(a)
    scores = scorer.score_sentences([line.split() for line in read_lines(a.input)])
    with atomic_write(a.output, "w") as f:
        for v in scores:
            f.write(f"{v:.6f}\n")
    log.info("%s: %d sentences, ln p summed %.2f", a.output, len(scores), float(scores.sum()))
    return 0




def _scorer(a: argparse.Namespace):
    from .scorer import PhraseScorer
    return PhraseScorer.load(a.model, resolve_device(a.device))


def cmd_inspect(a: argparse.Namespace) -> int:
    from .phrase_lists import compare, format_markdown, format_tsv
    sources = list(a.source)
    if a.sources:
        sources += [s for s in read_lines(a.sources) if s.strip()]
    if not sources:
        raise ValueError("inspect: give --source PHRASE or --sources FILE")
    if any(not s.strip() for s in sources):
        raise ValueError("inspect: an empty --source has no translations")
    lists = compare(_scorer(a), a.phrase_table, sources, a.k, a.column - 1, progress=not a.quiet,
                    known_targets=a.known_targets)
    sys.stdout.write(format_markdown(lists, a.column - 1) if a.format == "md" else format_tsv(lists))
    return 0


def cmd_generate(a: argparse.Namespace) -> int:
    from .generate import beam_search
    scorer = _scorer(a)
    for s in a.source:
        if not s.strip():
            raise ValueError("generate: an empty --source has no translations")
        shown = " ".join(w if w in scorer.src_vocab.index else "[UNK]" for w in s.split())
        print(f"{s}" + (f"  (the network reads: {shown})" if shown != s else ""))
        for g in beam_search(scorer.model, scorer.tgt_vocab, scorer.src_vocab.ids(s.split()), a.beam, a.n, a.max_len):
            print(f"  {g.logprob:9.3f}  {' '.join(g.words) or '(empty phrase)'}")
    return 0


def cmd_embed(a: argparse.Namespace) -> int:
    from .maps import embed_maps
    made = embed_maps(_scorer(a), a.phrase_table, a.out, a.words, a.phrases, a.min_words, a.seed,
                      progress=not a.quiet)
    for name, n in made.items():
        log.info("%s map: %d points, %s.png and .tsv", name, n, os.path.join(a.out, name))
    return 0


def run(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    """Parse, set up logging, call the subcommand's handler; our errors become one line and exit 1."""
    a = parser.parse_args(argv)
    a.argv = list(sys.argv[1:] if argv is None else argv)  # for the ranks of --workers
    setup_logging(verbose=a.verbose)
    try:
        return a.handler(a)
    except (ValueError, OSError, RuntimeError) as e:  # our errors name the file and line
        if a.verbose:
            raise
        log.error("%s", e)
        return 1
    except KeyboardInterrupt:
        log.error("interrupted; rerun with --resume to continue")
        return 130


DESCRIPTION = """rescorer: train Cho et al.'s RNN Encoder-Decoder on a Moses phrase table and add its score.

    rescorer vocab --phrase-table model/phrase-table.gz --size 15000 --output vocab/
    rescorer train --phrase-table model/phrase-table.gz --vocab vocab/ --output run/ --max-minutes 60
    rescorer score --phrase-table model/phrase-table.gz --model run/best.pt --output phrase-table.rnn.gz
    rescorer ini set-table --ini moses.ini --path phrase-table.rnn.gz --output moses.rnn.ini
    rescorer tune --ini moses.rnn.ini --input dev.en --ref dev.fr --output moses.tuned.ini
    rescorer inspect --model run/best.pt --phrase-table model/phrase-table.gz --source "the house"
    rescorer cslm-train --input train.tc.fr.gz --vocab vocab/ --output cslm/ --max-minutes 600
    rescorer cslm-rescore --model cslm/best.pt --nbest nbest.txt --output nbest.cslm.txt
"""

ENTRY_POINTS = "rescorer.commands"


def registrars() -> list[Callable[[argparse._SubParsersAction, argparse.ArgumentParser], None]]:
    """This package's ``register`` and those of the packages installed with commands of their own."""
    found = sorted(entry_points(group=ENTRY_POINTS), key=lambda e: e.name)
    return [register] + [e.load() for e in found]


def command_options(command: str) -> dict[str, argparse.Action]:
    """The options of a subcommand by their long name without dashes, in the order it declares
    them: what config files (the experiments' sections) may set, spelled as the flags."""
    sub = next(a for a in build_parser(*registrars())._actions if isinstance(a, argparse._SubParsersAction))
    out = {}
    for action in sub.choices[command]._actions:
        for s in action.option_strings:
            if s.startswith("--"):
                out.setdefault(s[2:], action)
    return out


def main(argv: list[str] | None = None) -> int:
    """The ``rescorer`` program: every subcommand."""
    return run(build_parser(*registrars(), description=DESCRIPTION), argv)


if __name__ == "__main__":
    sys.exit(main())
