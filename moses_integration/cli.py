"""The Moses side of the ``rescorer`` program, and the program itself (``main``): the commands of
this package (``ini``, ``decode``, ``tune``, ``evaluate``, ``cslm-rescore``, ``rerank``) registered beside those of
``rescorer.cli`` in one parser.

    rescorer ini set-table --ini moses.ini --path phrase-table.rnn.gz --output moses.rnn.ini
    rescorer tune --ini moses.rnn.ini --input dev.en --ref dev.fr --output moses.tuned.ini
    rescorer decode --ini moses.tuned.ini --input test.en --output test.out
    rescorer evaluate --input test.out --ref test.fr
    rescorer cslm-rescore --model cslm/best.pt --nbest nbest.txt --output nbest.cslm.txt
    rescorer rerank --nbest nbest.cslm.txt --ini moses.tuned.ini --weights 'CSLM0= 0.3' --output test.out
    rescorer tune --ini moses.rnn.ini --input dev.en --ref dev.fr --output moses.tuned.ini --cslm cslm/best.pt
"""
from __future__ import annotations

import argparse
import json
import logging
import os

import numpy as np

from rescorer import cli as rescorer_cli
from rescorer.fileio import OutputExistsError, atomic_write, check_can_write
from rescorer.runtime import add_device_option
from rescorer.text import read_lines

from .decoder import DecoderConfig, FeatureLayout
from .evaluate import corpus_bleu, paired_test, postprocess
from .mert import tunable_mask, tune, weight_ranges
from .moses_ini import MosesIni, count_dense_scores
from .nbest import add_feature, format_value, parse_features, rerank_file
from .runner import BuiltinDecoder, MosesDecoder, RescoredDecoder, find_moses

log = logging.getLogger("rescorer")




def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """This package's subcommands, each with its handler."""
    i = sub.add_parser("ini", help="edit a moses.ini: point a table at a scored file, add a feature, set weights",
                       description="Change a moses.ini and write it to --output; everything else in the file "
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
    st.add_argument("--output", "--out", dest="out", required=True, help="moses.ini to write")
    st.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    af = isub.add_parser("add-feature", parents=[common], help="add (or replace) a feature line and its weights",
                         description="Add a feature line to [feature] and its weight line to [weight]; a "
                                     "feature of the same name is replaced, not doubled. For the CSLM in the "
                                     "built-in decoder: --line 'CSLM name=CSLM0 path=cslm/best.pt' --weight 0.5 "
                                     "(a real Moses has no CSLM feature: rescore its n-best lists with "
                                     "'rescorer cslm-rescore').")
    af.add_argument("--ini", required=True)
    af.add_argument("--line", required=True, metavar="'KIND name=NAME key=value ...'")
    af.add_argument("--weight", type=float, nargs="+", required=True, help="start weight(s)")
    af.add_argument("--output", "--out", dest="out", required=True)
    af.add_argument("--overwrite", action="store_true")
    rf = isub.add_parser("remove-feature", parents=[common], help="remove a feature line and its weights")
    rf.add_argument("--ini", required=True)
    rf.add_argument("--name", required=True, help="name= of the feature, e.g. CSLM0")
    rf.add_argument("--output", "--out", dest="out", required=True)
    rf.add_argument("--overwrite", action="store_true")
    sw = isub.add_parser("set-weights", parents=[common], help="set weights, e.g. from a tuning result",
                         description="Set weight lines: each --weight is a line as in [weight], 'LM0= 0.5'.")
    sw.add_argument("--ini", required=True)
    sw.add_argument("--weight", action="append", required=True, metavar="'NAME= V ...'")
    sw.add_argument("--output", "--out", dest="out", required=True)
    sw.add_argument("--overwrite", action="store_true")
    for q in (st, af, rf, sw):
        q.set_defaults(handler=cmd_ini)
    def decoder_opts(q):
        g = q.add_argument_group("search (defaults: Moses's)")
        g.add_argument("--stack-size", type=int, default=200, help="hypotheses kept per stack (Moses -s, 200)")
        g.add_argument("--pop-limit", type=int, default=1000, help="cube-pruning pop limit (1000)")
        g.add_argument("--distortion-limit", type=int, help="default: the ini's [distortion-limit], else 6")
        g.add_argument("--table-limit", type=int, help="default: the table's table-limit=, else 20")
        g.add_argument("--beam-threshold", type=float,
                       help="prune a stack's hypotheses worse than its best times this (Moses -b); default: the "
                            "ini's [beam-threshold], else Moses's 0.00001; 0: no beam")
        g.add_argument("--threads", type=int, help="decoder processes (default: all cores)")
        g.add_argument("--moses-bin", help="a real Moses (binary or its directory; or $MOSES): use it instead")

    def cslm_opts(q, tuning: bool):
        g = q.add_argument_group(
            "the CSLM by n-best rescoring",
            "The search decodes with the CSLM's weight added to the stand-in's (an n-gram LM: both are "
            "ln p of the same target words); each n-best list then gets the CSLM's score and is "
            "re-ranked with all the weights" + (", and MERT tunes the CSLM's weight with the others. "
                                                "A real Moses has no CSLM feature, so its weight goes into a "
                                                "comment at the top of OUT_INI, with the commands that decode "
                                                "with it." if tuning else "."))
        g.add_argument("--cslm", metavar="MODEL", help="checkpoint from 'rescorer cslm-train'")
        if tuning:
            g.add_argument("--cslm-start-share", type=float, default=0.5,
                           help="the CSLM starts at this share of the stand-in's start weight, the stand-in "
                                "keeps the rest (default 0.5)")
        else:
            g.add_argument("--cslm-weight", type=float, help="the CSLM's tuned weight (required with --cslm)")
            g.add_argument("--cslm-nbest", type=int, default=100,
                           help="size of the n-best lists the CSLM re-ranks (default 100, as in tuning)")
        g.add_argument("--cslm-name", default="CSLM0", help="the feature's name (default CSLM0)")
        g.add_argument("--cslm-standin", default="LM0", help="the search feature that stands in for the CSLM "
                                                             "(default LM0)")
        add_device_option(g, "the CSLM's")

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
    cslm_opts(d, tuning=False)

    t = sub.add_parser("tune", parents=[common], help="MERT: tune the weights of a moses.ini on a dev set",
                       description="Och's MERT with exact line search over n-best lists accumulated across "
                                   "iterations (100-best, up to 25 iterations, 20 random restarts, as "
                                   "mert-moses.pl); writes a copy of the ini with the tuned weights.")
    t.add_argument("--ini", required=True)
    t.add_argument("--input", required=True, help="tokenised source side of the tuning set")
    t.add_argument("--ref", required=True, help="tokenised reference, the same preprocessing as the output")
    t.add_argument("--output", "--out-ini", dest="out_ini", required=True, help="moses.ini with the tuned weights")
    t.add_argument("--nbest", type=int, default=100)
    t.add_argument("--max-iter", type=int, default=25)
    t.add_argument("--restarts", type=int, default=20)
    t.add_argument("--range", action="append", default=[], metavar="NAME=LO,HI",
                   help="bounds for a feature's weights, e.g. 'LM0=0,inf' or 'WordPenalty0=-3,3' (repeatable). "
                        "Default: weights of log-probability features (TranslationModel, LM, "
                        "LexicalReordering, added neural columns) and Distortion stay >= 0; penalties are free")
    t.add_argument("--normalize", action="store_true",
                   help="scale the tuned weights to an L1 norm of 1 at the start and after every iteration, as "
                        "mert-moses.pl and Moses's mert do (the untuned UnknownWordPenalty keeps its weight)")
    t.add_argument("--log", help="JSON record of every iteration (default: OUT_INI.tune.json)")
    t.add_argument("--state", help="n-best pool, weights and log, saved after every iteration "
                                   "(default: OUT_INI.mert.npz)")
    t.add_argument("--resume", action="store_true",
                   help="continue from --state after its last finished iteration (as mert-moses.pl --continue); "
                        "--max-iter may be raised")
    t.add_argument("--overwrite", action="store_true", help="replace OUT_INI, and start afresh over an old --state")
    decoder_opts(t)
    cslm_opts(t, tuning=True)

    e = sub.add_parser("evaluate", parents=[common], help="BLEU with sacrebleu on detokenised output; "
                       "paired bootstrap against a baseline",
                       description="Detruecase and detokenise decoder output (sacremoses), then BLEU with "
                                   "sacrebleu against raw references; its signature is printed.")
    e.add_argument("--input", "--hyp", dest="hyp", required=True, help="decoder output (tokenised, truecased)")
    e.add_argument("--ref", required=True, help="raw reference text")
    e.add_argument("--baseline", help="another system's output: sacrebleu's paired bootstrap resampling against it")
    e.add_argument("--lang", default="fr", help="output language for detokenisation (default fr)")
    e.add_argument("--no-postprocess", action="store_true", help="score the output as it is")
    e.add_argument("--samples", type=int, default=1000, help="bootstrap samples (default 1000)")

    d.set_defaults(handler=cmd_decode)
    t.set_defaults(handler=cmd_tune)
    e.set_defaults(handler=cmd_evaluate)
    cr = sub.add_parser("cslm-rescore", parents=[common], help="add the CSLM score to every hypothesis of a Moses n-best list",
                        description="Append 'CSLM0= ln p(hypothesis </s>)' to the feature field of every line "
                                    "of a Moses n-best list (from Moses or 'rescorer decode'); every other "
                                    "byte is kept. Tune with the new feature's weight, then re-rank.")
    cr.add_argument("--model", required=True, help="checkpoint from 'rescorer cslm-train'")
    cr.add_argument("--nbest", required=True, help="Moses n-best list")
    cr.add_argument("--output", "--out", dest="out", required=True, help="n-best list with the new feature")
    cr.add_argument("--name", default="CSLM0", help="feature name (default CSLM0)")
    cr.add_argument("--overwrite", action="store_true")
    add_device_option(cr, "the CSLM's")
    cr.set_defaults(handler=cmd_cslm_rescore)
    rr = sub.add_parser("rerank", parents=[common], help="re-rank a Moses n-best list with a moses.ini's weights",
                        description="Recompute every hypothesis's total from its features and the weights of "
                                    "--ini's [weight] section, --weights overriding or adding some (Moses's "
                                    "-weight-overwrite syntax, e.g. 'CSLM0= 0.3' for a feature that "
                                    "'rescorer cslm-rescore' added), and write each sentence's best hypothesis. "
                                    "Every feature of the list needs a weight.")
    rr.add_argument("--nbest", required=True, help="Moses n-best list, in sentence order")
    rr.add_argument("--ini", help="moses.ini whose [weight] section gives the weights")
    rr.add_argument("--weights", metavar="'NAME= W ... NAME2= W'", help="weights to set or add")
    rr.add_argument("--output", required=True, help="the best hypothesis of each sentence, one per line")
    rr.add_argument("--n-best-out", help="the re-ranked n-best list (totals recomputed)")
    rr.add_argument("--sentences", type=int,
                    help="number of input sentences: an empty line for each one the list lacks at its end")
    rr.add_argument("--overwrite", action="store_true")
    rr.set_defaults(handler=cmd_rerank)


def read_input(path: str) -> list[str]:
    """Sentences for the decoder.  '|' separates factors in Moses's input (``word|factor``), and
    Moses's tokenizer escapes it as ``&#124;``; the built-in decoder reads one factor, so a '|'
    in the input is refused with its file and line rather than written into the output, where
    it would break an n-best line."""
    lines = read_lines(path)
    for i, line in enumerate(lines, 1):
        if "|" in line:
            raise ValueError(f"{path}:{i}: '|' in the input: it is Moses's factor separator; escape it as "
                             "&#124; as Moses's tokenizer does")
    return lines


def _decoder(a: argparse.Namespace, sentences: list[str]):
    cfg = DecoderConfig(stack_size=a.stack_size, pop_limit=a.pop_limit, distortion_limit=a.distortion_limit,
                        table_limit=a.table_limit, beam_threshold=a.beam_threshold)
    builtin = BuiltinDecoder(a.ini, sentences, cfg, a.threads, progress=not a.quiet)
    if a.moses_bin or os.environ.get("MOSES"):
        moses = find_moses(a.moses_bin)
        if moses is None:
            raise FileNotFoundError(f"no moses binary at {a.moses_bin or os.environ.get('MOSES')}")
        log.info("decoding with the real Moses at %s", moses)
        return builtin, MosesDecoder(moses, a.ini, sentences, builtin.layout, a.threads)
    return builtin, builtin


def _rescored(a: argparse.Namespace, dec) -> RescoredDecoder:
    """``dec`` whose n-best lists the CSLM of ``--cslm`` rescores, ``--cslm-standin`` standing in
    for it in the search."""
    scorer = rescorer_cli.cslm_scorer(argparse.Namespace(model=a.cslm, device=a.device))
    return RescoredDecoder(dec, a.cslm_name, scorer.score_sentences, standin=a.cslm_standin)


def cmd_decode(a: argparse.Namespace) -> int:
    check_can_write(a.output, a.overwrite)
    if a.moses_bin or os.environ.get("MOSES"):  # refuse before loading any table
        raise RuntimeError("decode with a real Moses: run moses itself; --moses-bin is for 'tune'")
    if a.cslm and a.cslm_weight is None:
        raise ValueError("--cslm needs --cslm-weight (the weight 'rescorer tune --cslm' wrote at the top of its ini)")
    n = int(a.n_best_list[1]) if a.n_best_list else 1
    if a.cslm and n > a.cslm_nbest:
        raise ValueError(f"--n-best-list asks for {n} hypotheses but the CSLM re-ranks {a.cslm_nbest} (--cslm-nbest)")
    sentences = read_input(a.input)
    builtin, _ = _decoder(a, sentences)
    if not a.cslm:
        results = builtin.translate(nbest=n)  # -q reached the decoder in _decoder
        builtin.write(results, a.output, a.n_best_list[0] if a.n_best_list else None, a.segmentation)
        log.info("%s: %d sentences translated", a.output, len(results))
        return 0
    if a.segmentation:
        raise ValueError("--segmentation is not available with --cslm (the re-ranked lists keep words and features)")
    dec = _rescored(a, builtin)
    weights = np.append(builtin.model.weights, a.cslm_weight)
    lists = dec.nbest_lists(weights, a.cslm_nbest)
    with atomic_write(a.output, "w") as f:
        f.writelines(" ".join(cands[0][0] if cands else []) + "\n" for cands in lists)
    if a.n_best_list:
        with atomic_write(a.n_best_list[0], "w") as f:
            for i, cands in enumerate(lists):
                for words, feats in cands[:n]:
                    f.write(" ||| ".join([str(i), " ".join(words) + " ",
                                          f"{builtin.layout.format(feats[:-1])} {a.cslm_name}= {format_value(feats[-1])}",
                                          format_value(float(feats @ weights))]) + "\n")
    log.info("%s: %d sentences translated, each the best of its %d-best list re-ranked with %s= %g",
             a.output, len(lists), a.cslm_nbest, a.cslm_name, a.cslm_weight)
    return 0


def cmd_tune(a: argparse.Namespace) -> int:
    check_can_write(a.out_ini, a.overwrite)
    state = a.state or a.out_ini + ".mert.npz"
    if not a.resume and os.path.exists(state) and not a.overwrite:
        raise OutputExistsError(f"{state} exists (an earlier tuning run): pass --resume to continue it "
                                "or --overwrite to start again")
    sentences, refs = read_input(a.input), read_lines(a.ref)
    if len(sentences) != len(refs):
        raise ValueError(f"{a.input}: {len(sentences)} lines but {a.ref} has {len(refs)}")
    builtin, dec = _decoder(a, sentences)
    layout = builtin.layout
    groups, w0 = list(layout.groups), builtin.model.weights.copy()
    if a.cslm:
        if a.cslm_name in {name for name, _, _ in groups}:
            raise ValueError(f"{a.ini}: {a.cslm_name} is a feature of the search already; --cslm rescores the "
                             f"n-best lists of an ini without it ('rescorer ini remove-feature --name {a.cslm_name}')")
        dec = _rescored(a, dec)
        groups = dec.groups
        w0 = dec.start_weights(w0, a.cslm_start_share)
    tunable = tunable_mask(groups)
    lower, upper = weight_ranges(groups, a.range)
    res = tune(dec.nbest_lists, [r.split() for r in refs], w0, tunable,
               nbest=a.nbest, max_iter=a.max_iter, restarts=a.restarts, lower=lower, upper=upper,
               processes=a.threads or os.cpu_count() or 1, state=state, resume=a.resume, normalize=a.normalize)
    ini = MosesIni.read(a.ini)
    tuned = {name: [float(v) for v in res.weights[sl]] for name, sl in FeatureLayout(groups).slices().items()}
    ini.set_weights({name: w for name, w in tuned.items() if name in ini.weights()})
    if a.cslm:
        with atomic_write(a.out_ini, "w") as f:
            f.write("".join(f"# {line}\n" for line in cslm_note(a, tuned)) + ini.text())
    else:
        ini.write(a.out_ini)
    with atomic_write(a.log or a.out_ini + ".tune.json", "w") as f:
        json.dump(res.history, f, indent=1)
    for r in res.history:
        log.info("iteration %d: dev BLEU %.2f", r["iteration"], r["dev_bleu"])
    log.info("tuned weights written to %s", a.out_ini)
    return 0


def cslm_note(a: argparse.Namespace, weights: dict[str, list[float]]) -> list[str]:
    """The comment lines at the top of an ini tuned with ``--cslm``: the CSLM's weight, which a
    [weight] section cannot hold (Moses refuses weights of features it does not have), and the
    commands that decode with it."""
    w, name, standin = weights[a.cslm_name][0], a.cslm_name, a.cslm_standin
    search = weights[standin][0] + w
    return [f"{name}= {w:.6g}: tuned by 'rescorer tune --cslm {a.cslm}'. The CSLM is not a feature of the search: "
            f"it re-ranks {a.nbest}-best lists from a search in which {standin} stands in for it "
            f"({standin}= {search:.6g}, its weight plus {name}'s).",
            f"Built-in decoder: rescorer decode --ini {os.path.basename(a.out_ini)} --cslm {a.cslm} "
            f"--cslm-weight {w:.6g} --cslm-nbest {a.nbest} --input IN --output OUT",
            f"Moses: moses -f {os.path.basename(a.out_ini)} -n-best-list NBEST {a.nbest} distinct "
            f"-weight-overwrite '{standin}= {search:.6g}', then rescorer cslm-rescore --model {a.cslm} "
            f"--nbest NBEST --output NBEST.cslm and rescorer rerank --nbest NBEST.cslm "
            f"--ini {os.path.basename(a.out_ini)} --weights '{name}= {w:.6g}' --output OUT"]


def cmd_evaluate(a: argparse.Namespace) -> int:
    hyps, refs = read_lines(a.hyp), read_lines(a.ref)
    if not a.no_postprocess:
        hyps = postprocess(hyps, a.lang)
    score, text, sig = corpus_bleu(hyps, refs)
    print(f"{text}\n{sig}")
    if a.baseline:
        base = read_lines(a.baseline)
        if not a.no_postprocess:
            base = postprocess(base, a.lang)
        r = paired_test(base, hyps, refs, "bs", a.samples)
        print(f"sacrebleu's paired bootstrap ({a.samples} resamples): baseline {r['baseline']:.2f}, system "
              f"{r['system']:.2f} (mean {r['system_mean']:.2f} +- {r['system_ci']:.2f}, 95%), p = {r['p_value']:.4f}"
              f"\n{r['signature']}")
    return 0


def cmd_ini(a: argparse.Namespace) -> int:
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


def cmd_cslm_rescore(a: argparse.Namespace) -> int:
    check_can_write(a.out, a.overwrite)
    scorer = rescorer_cli.cslm_scorer(a)
    n = add_feature(a.nbest, a.out, a.name, lambda texts: [[v] for v in scorer.score_sentences(
        [t.split() for t in texts])])
    log.info("%s: %s= added to %d hypotheses", a.out, a.name, n)
    return 0


def cmd_rerank(a: argparse.Namespace) -> int:
    if not a.ini and not a.weights:
        raise ValueError("rerank: give the weights with --ini, --weights or both")
    for out in filter(None, (a.output, a.n_best_out)):
        check_can_write(out, a.overwrite)
    weights = MosesIni.read(a.ini).weights() if a.ini else {}
    if a.weights:
        weights.update(parse_features(a.weights, "--weights"))
    r = rerank_file(a.nbest, weights, a.output, a.n_best_out, a.sentences)
    log.info("%s: best of %d hypotheses for %d sentences%s", a.output, r["hypotheses"], r["sentences"],
             f" ({len(r['missing'])} without any: empty lines)" if r["missing"] else "")
    return 0
