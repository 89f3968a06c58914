"""The built-in decoder against brute force on tiny hand-made models.

Every segmentation, order (within Moses's distortion rules) and choice of options is
enumerated; features are recomputed here independently (the LM by kenlm full-sentence
scoring, reordering by the orientation definitions) and compared with the decoder's best
hypothesis and with every line of its n-best list.
"""
import gzip
import heapq
import importlib.util
import itertools
import math
import os

import kenlm
import numpy as np
import pytest
import torch

from moses_integration import decoder, search
from moses_integration.decoder import DecoderConfig, PhraseModel
from moses_integration.nbest import parse_line
from moses_integration.table_filter import _read_columns_line_by_line, read_columns
from rescorer.checkpoint import save_cslm_checkpoint
from rescorer.cli import main
from rescorer.cslm import CSLM, CSLMConfig
from rescorer.phrase_table import PhraseTableError
from rescorer.vocab import EOS, UNK, Vocabulary

SRC = ["a", "b", "c", "d", "e"]
TGT = ["x", "y", "z", "w", "v"]


def write_arpa(path, rng):
    """A 3-gram ARPA model with random (normalised-ish) probabilities and back-offs."""
    vocab = TGT
    uni = ["<unk>", "<s>", "</s>"] + vocab
    bi = [(a, b) for a in ["<s>"] + vocab for b in vocab + ["</s>"] if rng.random() < 0.5]
    has = set(bi)
    tri = [(a, b, c) for (a, b) in bi if b != "</s>" for c in vocab + ["</s>"]
           if (b, c) in has and rng.random() < 0.4]   # an n-gram's suffix must be in the model too
    lines = ["\\data\\", f"ngram 1={len(uni)}", f"ngram 2={len(bi)}", f"ngram 3={len(tri)}", "", "\\1-grams:"]
    for w in uni:
        p = -99.0 if w == "<s>" else -rng.uniform(0.3, 1.5)
        lines.append(f"{p:.4f}\t{w}\t{-rng.uniform(0.05, 0.5):.4f}" if w not in ("</s>", "<unk>") else f"{p:.4f}\t{w}")
    lines += ["", "\\2-grams:"]
    for a, b in bi:
        bo = f"\t{-rng.uniform(0.05, 0.5):.4f}" if b != "</s>" else ""
        lines.append(f"{-rng.uniform(0.1, 1.0):.4f}\t{a} {b}{bo}")
    lines += ["", "\\3-grams:"]
    for a, b, c in tri:
        lines.append(f"{-rng.uniform(0.05, 0.8):.4f}\t{a} {b} {c}")
    lines += ["", "\\end\\", ""]
    path.write_text("\n".join(lines))


def write_cslm(path, seed):
    """A tiny CSLM whose shortlist holds x, y, z (w, v and passed-through words fall outside)."""
    vocab = Vocabulary([EOS, UNK, "x", "y", "z"])
    torch.manual_seed(seed)
    m = CSLM(CSLMConfig(len(vocab), order=3, embed=4, hidden=(6,)))
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0.0, 0.8)
    save_cslm_checkpoint(path, m, vocab, {"w": 3, "v": 1})


def make_model(tmp_path, seed, with_lr=True, dl=3, with_cslm=False):
    rng = np.random.default_rng(seed)
    table, reo = [], []
    srcs = set()
    for n in (1, 2, 3):
        for src in itertools.product(SRC[:4], repeat=n):   # "e" has no translation: unknown word
            if n > 1 and rng.random() > 0.35:
                continue
            for _ in range(rng.integers(1, 3)):
                tgt = " ".join(rng.choice(TGT, rng.integers(1, 3)))
                srcs.add((" ".join(src), tgt))
    for s, t in sorted(srcs):
        p = rng.uniform(0.01, 1.0, 4)
        table.append(f"{s} ||| {t} ||| {' '.join(f'{x:.5f}' for x in p)} ||| 0-0 ||| 1 1 1\n")
        if rng.random() < 0.8:
            q = rng.dirichlet([1, 1, 1]), rng.dirichlet([1, 1, 1])
            reo.append(f"{s} ||| {t} ||| {' '.join(f'{x:.5f}' for x in np.concatenate(q))}\n")
    with gzip.open(tmp_path / "pt.gz", "wt") as f:
        f.writelines(table)
    with gzip.open(tmp_path / "reo.gz", "wt") as f:
        f.writelines(reo)
    write_arpa(tmp_path / "lm.arpa", rng)
    w = lambda k=1: " ".join(f"{x:.3f}" for x in rng.uniform(0.05, 0.6, k))  # noqa: E731
    lr_feat = (f"LexicalReordering name=LexicalReordering0 num-features=6 "
               f"type=wbe-msd-bidirectional-fe-allff input-factor=0 output-factor=0 path={tmp_path / 'reo.gz'}\n")
    ini = ("[distortion-limit]\n" + f"{dl}\n\n[feature]\nUnknownWordPenalty\nWordPenalty\nPhrasePenalty\n"
           f"PhraseDictionaryMemory name=TranslationModel0 num-features=4 path={tmp_path / 'pt.gz'} "
           "input-factor=0 output-factor=0 table-limit=0\n" + (lr_feat if with_lr else "") +
           f"Distortion\nKENLM name=LM0 factor=0 path={tmp_path / 'lm.arpa'} order=3\n" +
           (f"CSLM name=CSLM0 path={tmp_path / 'cslm.pt'}\n" if with_cslm else "") + "\n[weight]\n"
           f"UnknownWordPenalty0= 1\nWordPenalty0= {rng.uniform(-1, 1):.3f}\nPhrasePenalty0= {rng.uniform(-1, 1):.3f}\n"
           f"TranslationModel0= {w(4)}\n" + (f"LexicalReordering0= {w(6)}\n" if with_lr else "") +
           f"Distortion0= {w()}\nLM0= {w()}\n" + (f"CSLM0= {w()}\n" if with_cslm else ""))
    if with_cslm:
        write_cslm(tmp_path / "cslm.pt", seed)
    (tmp_path / "moses.ini").write_text(ini)
    return tmp_path / "moses.ini"


def brute_force(model: PhraseModel, sentence: str, lm):
    """Every derivation Moses's rules allow, with its features computed from scratch."""
    words = sentence.split()
    n, dl = len(words), model.dl
    opts = model.options(words)
    sl = model.layout.slices()
    out = []

    def orders(cov, last_start, last_end, seq):
        if cov == (1 << n) - 1:
            yield list(seq)
            return
        first_gap = next(i for i in range(n) if not cov >> i & 1)
        for (s, e) in opts:
            if any(cov >> i & 1 for i in range(s, e)):
                continue
            if abs(s - last_end) > dl:
                continue
            if s != first_gap and abs(e - first_gap) > dl:
                continue
            seq.append((s, e))
            yield from orders(cov | sum(1 << i for i in range(s, e)), s, e, seq)
            seq.pop()

    for spans in orders(0, -1, 0, []):
        for choice in itertools.product(*[opts[sp] for sp in spans]):
            f = np.zeros(model.layout.size)
            tgt = []
            prev = None
            for o in choice:
                f += o.delta  # TM, WP, PP, UWP: the table's numbers
                start_prev_end = 0 if prev is None else prev.end
                f[sl["Distortion0"]] += -abs(o.start - start_prev_end)
                if "LexicalReordering0" in sl:
                    if prev is None:
                        orient = 0 if o.start == 0 else 2
                    elif o.start == prev.end:
                        orient = 0
                    elif o.end == prev.start:
                        orient = 1
                    else:
                        orient = 2
                    lr0 = sl["LexicalReordering0"].start
                    if o.lr is not None:
                        f[lr0 + orient] += o.lr[orient]
                    if prev is not None and prev.lr is not None:
                        f[lr0 + 3 + orient] += prev.lr[3 + orient]
                tgt += o.target
                prev = o
            f[sl["LM0"]] = lm.score(" ".join(tgt), bos=True, eos=True) * math.log(10)
            if "CSLM0" in sl:  # the whole sentence at once, not the decoder's buffered n-grams
                f[sl["CSLM0"]] = model.cslm.score_sentences([tgt])[0]
            out.append((float(model.weights @ f), " ".join(tgt), f, [(o.start, o.end - 1) for o in choice]))
    return sorted(out, key=lambda x: -x[0])


@pytest.mark.parametrize("seed, with_lr, with_cslm", [(0, True, False), (1, True, False), (2, False, False),
                                                     (3, True, False), (4, True, True), (5, False, True)])
def test_best_and_nbest_equal_brute_force(tmp_path, seed, with_lr, with_cslm):
    ini = make_model(tmp_path, seed, with_lr, with_cslm=with_cslm)
    sentences = ["a b c", "b a d c", "a e b", "d c b a", "c a b d a"]
    model = PhraseModel(str(ini), sentences, DecoderConfig(stack_size=100000, pop_limit=10 ** 7, beam_threshold=0))
    lm = kenlm.Model(str(tmp_path / "lm.arpa"))
    for k, sent in enumerate(sentences):
        every = brute_force(model, sent, lm)
        nbest = model.decode(sent, nbest=20)
        best = nbest[0]
        assert best.score == pytest.approx(every[0][0], abs=1e-4), sent
        assert " ".join(best.words) == every[0][1]
        # each n-best line: features equal an independent recomputation of its derivation
        by_deriv = {(t, tuple(seg)): (s, f) for s, t, f, seg in every}
        scores = []
        for t in nbest:
            line = model.nbest_line(k, t, segmentation=True)
            h = parse_line(line)
            seg = tuple((int(p.split("=")[0].split("-")[0]), int(p.split("=")[0].split("-")[1]))
                        for p in h.fields[4].split())
            s, f = by_deriv[(h.text, seg)]
            printed = np.concatenate([v for _, v in h.features])
            visible = np.concatenate([f[model.layout.slices()[name]]
                                      for name, _, shown in model.layout.groups if shown])
            np.testing.assert_allclose(printed, visible, atol=2e-4)
            assert h.total == pytest.approx(s, abs=1e-3)
            scores.append(s)
        assert scores == sorted(scores, reverse=True)
        assert scores == pytest.approx([x[0] for x in every[:len(scores)]], abs=1e-4)
        assert len({(tuple(t.words), tuple(t.segmentation)) for t in nbest}) == len(nbest)


def test_unknown_words_pass_through_with_penalty(tmp_path):
    ini = make_model(tmp_path, 5)
    model = PhraseModel(str(ini), ["a e"], DecoderConfig())
    best = model.decode("a e")[0]
    assert "e" in best.words
    assert best.features[model.layout.slices()["UnknownWordPenalty0"]][0] == -100.0


def test_search_core_is_compiled():
    """`make setup` compiles moses_integration/search.py with Cython; run as plain Python it
    gives the same translations (the tests above pass either way), only slower."""
    assert decoder.COMPILED and search.__file__.endswith(".so"), (
        f"{search.__file__} is not compiled: run `make setup` or `python setup.py build_ext --inplace`")


def _plain_search():
    src = os.path.join(os.path.dirname(decoder.__file__), "search.py")
    spec = importlib.util.spec_from_file_location("search_as_python", src)
    plain = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plain)
    return plain


@pytest.mark.parametrize("seed, with_lr", [(0, True), (2, False)])
def test_plain_python_search_equals_the_compiled_one(tmp_path, monkeypatch, seed, with_lr):
    """search.py run by Python (as where it is not compiled) gives the same n-best lists, also
    for a sentence longer than 64 words (coverage bit sets wider than a machine word)."""
    plain = _plain_search()
    assert not plain.COMPILED
    ini = make_model(tmp_path, seed, with_lr)
    sentences = ["a b c", "b a d c", "d c b a", "c a b d a", " ".join(["c a e b d"] * 14)]
    model = PhraseModel(str(ini), sentences, DecoderConfig(pop_limit=50, stack_size=20))
    before = [model.decode(s, nbest=10, distinct=True) for s in sentences]
    for name in ("Option", "Search", "root_hyp", "trellis_paths"):
        monkeypatch.setattr(decoder, name, getattr(plain, name))
    model = PhraseModel(str(ini), sentences, DecoderConfig(pop_limit=50, stack_size=20))
    after = [model.decode(s, nbest=10, distinct=True) for s in sentences]
    assert sorted(i for a, b, _, _ in before[-1][0].segmentation for i in range(a, b + 1)) == list(range(70))
    for b, a in zip(before, after):
        assert [(t.words, t.segmentation) for t in b] == [(t.words, t.segmentation) for t in a]
        np.testing.assert_allclose([t.score for t in b], [t.score for t in a], atol=1e-9)
        np.testing.assert_allclose(np.array([t.features for t in b]), np.array([t.features for t in a]), atol=1e-9)


@pytest.mark.parametrize("popped, size, beam, kept", [
    # the third is below best + beam when it comes; at 4 hypotheses (> 2 * 2 - 1) the stack is
    # pruned to the 2 best above the beam, and what comes later below them is dropped
    ([-5, -1, -4, -3.5, -2, -9], 2, -2.5, [-1, -2]),
    ([-1, -5, -2], 3, -2.5, [-1, -2]),        # the beam, though the stack has room
    ([-5, -1], 3, -2.5, [-1, -5]),            # admitted before the best came: Moses keeps it
    ([-5, -1, -2], 3, -math.inf, [-1, -2, -5]),
    ([-1, -3, -1], 1, -2.5, [-1, -1]),        # ties with the size-th best stay
    # scores whose float the beam does not change (weights far from 1, as MERT can give on a
    # tiny tuning set): none is above best + beam, the best stays
    ([1e17, 1e17 + 32, 1e17 - 64], 1, math.log(1e-5), [1e17 + 32]),
])
def test_a_stack_is_filled_and_pruned_as_moses_does(popped, size, beam, kept):
    """``Search.fill``: Moses's AddPrune (beam, lazy pruning at twice the stack size) and
    PruneToSize (ties kept), on hypotheses of distinct coverage in the order they were popped."""
    plain = _plain_search()
    sr = plain.Search(8, {}, [[0.0] * 9 for _ in range(9)], 6, 7, None, 0.0, False, 0.0, None)
    hyps = [plain._new_hyp(1 << i, 1, i, i + 1, 0, None, t, 0.0, None, None) for i, t in enumerate(popped)]
    assert [h.score for h in sr.fill(hyps, size, beam)] == kept


def test_recombination_keeps_the_better_of_equal_keys_in_the_stack():
    plain = _plain_search()
    sr = plain.Search(8, {}, [[0.0] * 9 for _ in range(9)], 6, 7, None, 0.0, False, 0.0, None)
    a, b, c = (plain._new_hyp(1, 1, 0, 1, 0, None, t, 0.0, None, None) for t in (-3.0, -2.0, -4.0))
    (best,) = sr.fill([a, b, c], 2, math.log(1e-5))
    assert best is b and b.arcs == [a, c]


def test_beam_threshold_from_the_ini_or_the_option(tmp_path):
    ini = make_model(tmp_path, 5)
    assert PhraseModel(str(ini), ["a e"], DecoderConfig()).beam == pytest.approx(math.log(1e-5))
    assert PhraseModel(str(ini), ["a e"], DecoderConfig(beam_threshold=0)).beam == -math.inf
    ini.write_text(ini.read_text() + "\n[beam-threshold]\n0.001\n")
    assert PhraseModel(str(ini), ["a e"], DecoderConfig()).beam == pytest.approx(math.log(1e-3))
    with pytest.raises(decoder.DecoderError, match=r"beam threshold 1.5: Moses's beam-threshold is a probability"):
        PhraseModel(str(ini), ["a e"], DecoderConfig(beam_threshold=1.5))


def _every_deviation_queued(finals, n, distinct, max_explored):
    """Moses's trellis paths with every deviation of a popped path put in the queue at once
    (the plain form of search.trellis_paths): the order it must reproduce, ties included."""
    heap = [(-h.score, i, None, 0, h, -1) for i, h in enumerate(finals)]
    heapq.heapify(heap)
    counter, explored, out, seen = len(heap), 0, [], set()
    while heap and len(out) < n and explored < max_explored:
        neg, _, parent, pos, h, changed = heapq.heappop(heap)
        explored += 1
        rev = (parent[:pos] if parent is not None else []) + [h] + h.path()[::-1][1:]
        words = tuple(w for x in rev[::-1] for w in x.option.target)
        if not distinct or words not in seen:
            seen.add(words)
            out.append((rev[::-1], -neg))
        for p in range(changed + 1, len(rev)):
            for a in rev[p].arcs or ():
                heapq.heappush(heap, (neg + rev[p].score - a.score, counter, rev, p, a, p))
                counter += 1
    return out


@pytest.mark.parametrize("tied", [False, True])
def test_trellis_paths_equal_queueing_every_deviation(tmp_path, monkeypatch, tied):
    """The n-best paths (which hypotheses, in which order, with which scores) are those of the
    plain algorithm, also when many paths tie (only the word and phrase penalties weighted) and
    when the bound on explored paths ends the search."""
    ini = make_model(tmp_path, 3)
    sentences = ["a b c d", "d c b a c", "b a d c a b"]
    model = PhraseModel(str(ini), sentences, DecoderConfig(pop_limit=100, stack_size=50))
    if tied:
        w = np.zeros(model.layout.size)
        w[model.layout.slices()["WordPenalty0"]] = 1.0
        w[model.layout.slices()["PhrasePenalty0"]] = 1.0
        model.set_weights(w)
    seen = []

    def spy(finals, n, distinct, max_explored):
        seen.append(finals)
        return search.trellis_paths(finals, n, distinct, max_explored)
    monkeypatch.setattr(decoder, "trellis_paths", spy)
    compared = ties = 0
    for s in sentences:
        model.decode(s)
        for n, distinct, bound in ((30, False, 1500), (30, True, 1500), (30, True, 12), (500, False, 25000)):
            got = search.trellis_paths(seen[-1], n, distinct, bound)
            want = _every_deviation_queued(seen[-1], n, distinct, bound)
            assert [([id(h) for h in path], score) for path, score in got] == \
                [([id(h) for h in path], score) for path, score in want]
            compared += len(got)
            ties += sum(a[1] == b[1] for a, b in zip(got, got[1:]))
    assert compared > 300 and (ties > 100 if tied else True)


def test_decode_input_errors_name_file_and_line(tmp_path, caplog):
    ini = make_model(tmp_path, 5)
    bad = tmp_path / "bad.en"
    bad.write_bytes(b"a e\na \xff e\n")
    assert main(["decode", "-q", "--ini", str(ini), "--input", str(bad), "--output", str(tmp_path / "o")]) == 1
    assert f"{bad}:2: not UTF-8" in caplog.text
    pipe = tmp_path / "pipe.en"
    pipe.write_text("a e\na ||| e\n")
    assert main(["decode", "-q", "--ini", str(ini), "--input", str(pipe), "--output", str(tmp_path / "o")]) == 1
    assert f"{pipe}:2: '|' in the input: it is Moses's factor separator" in caplog.text
    assert not (tmp_path / "o").exists()


def test_table_columns_in_bulk_equal_line_by_line_and_name_the_bad_line(tmp_path):
    """read_columns parses the scores in bulk; a line NumPy cannot read in bulk (here a score
    written 1_000, which Python's float reads) is read line by line to the same columns, and a
    bad line is named with its file and number, whatever is wrong with it."""
    lines = [b"a ||| x y ||| 0.5 0.25 1e-3 ||| 0-0 ||| 1 1 1\n", b"a b ||| z ||| 1 0.125 0.75\n",
             b"c ||| w ||| 0.1 0.2 0.3 ||| 0-0\n", b"zz ||| q ||| 1 1 1\n"]
    wanted = {b"a", b"a b", b"c"}
    path = tmp_path / "pt"
    path.write_bytes(b"".join(lines))
    src, tgt, vals = read_columns(path, wanted, 3, progress=False)
    assert (src, tgt) == (["a", "a b", "c"], ["x y", "z", "w"])
    np.testing.assert_array_equal(vals, [[0.5, 0.25, 1e-3], [1, 0.125, 0.75], [0.1, 0.2, 0.3]])
    assert [x.tolist() for x in _read_columns_line_by_line(str(path), wanted, 3)[2]] == vals.tolist()
    path.write_bytes(b"".join(lines).replace(b"1 0.125", b"1_000 0.125"))
    assert read_columns(path, wanted, 3, progress=False)[2][1].tolist() == [1000, 0.125, 0.75]
    for bad, message in [(b"a b ||| z ||| 1 0.125\n", "2 scores, 3 expected"),
                         (b"a b ||| z ||| 1 nan 0.75\n", "is not a number"),
                         (b"a b ||| z ||| 1 0.1x 0.75\n", "is not a number"),
                         (b"a b ||| \xff ||| 1 0.125 0.75\n", "not UTF-8"),
                         (b"a b |||  ||| 1 0.125 0.75\n", "empty target"),
                         (b"a b ||| z\n", "expected 'source ||| target ||| scores")]:
        path.write_bytes(lines[0] + bad + lines[2])
        with pytest.raises(PhraseTableError, match=f"{path}:2: .*{message}"):
            read_columns(path, wanted, 3, progress=False)


def test_reordering_table_in_another_order_gives_the_same_options(tmp_path):
    """The reordering scores are taken row by row when the reordering table lists the phrase
    table's pairs in the same order (checked by a digest) and looked up by pair otherwise:
    both give every option the same scores, and a pair the table lacks gets none."""
    ini = make_model(tmp_path, 3)
    pt = [ln for ln in gzip.open(tmp_path / "pt.gz", "rt")]
    rng = np.random.default_rng(0)
    full = [f"{ln.split(' ||| ')[0]} ||| {ln.split(' ||| ')[1]} ||| "
            f"{' '.join(f'{x:.5f}' for x in rng.uniform(0.01, 1, 6))}\n" for ln in pt]
    sentences = ["a b c", "b a d c", "d c b a"]

    def options(reordering):
        with gzip.open(tmp_path / "reo.gz", "wt") as f:
            f.writelines(reordering)
        model = PhraseModel(str(ini), sentences, DecoderConfig())
        return [{k: [(o.target, o.lr) for o in v] for k, v in model.options(s.split()).items()} for s in sentences]

    same_order = options(full)
    assert options(full[::-1]) == same_order
    assert any(o[1] is not None for opts in same_order for v in opts.values() for o in v)
    lacking = options(full[1:])
    first = (pt[0].split(" ||| ")[0], tuple(pt[0].split(" ||| ")[1].split()))
    seen_first = False
    for sent, a, b in zip(sentences, lacking, same_order):
        assert a.keys() == b.keys()
        for (i, j), opts in b.items():
            src = " ".join(sent.split()[i:j])
            for (t, lr), (t_a, lr_a) in zip(opts, a[(i, j)]):
                seen_first |= (src, t) == first
                assert (t_a, lr_a) == (t, None if (src, t) == first else lr)
    assert seen_first


def test_compiled_table_scan_equals_numpy_path(tmp_path, monkeypatch):
    """The compiled scanner reads the same columns as NumPy's path, number for number (bit for
    bit, signed zeros included), whatever block boundaries cut the lines: numbers in every
    form a table may hold (Clinger's fast path and strtod's), targets shared by several
    sources, lines without the separator, CRLF endings, a last line without its newline."""
    from moses_integration import table_filter
    assert table_filter.table_scan is not None, "make setup builds moses_integration/table_scan"
    rng = np.random.default_rng(5)
    forms = ["1", "-0", "+2", ".5", "1.", "1E+02", "2.5983e-10", "0.000000000000001234", "1e-300", "1e308",
             "123456789012345678", "0.1234567890123456789", "7e22", "7e23", "9007199254740993", "-3.5e-5"]
    x = rng.lognormal(0, 4, 400) * rng.choice([-1, 1], 400)
    numbers = forms + [f"{v:.6g}" for v in x[:200]] + [f"{v:.17g}" for v in x[200:300]] + [f"{v:e}" for v in x[300:]]
    lines, wanted = [], set()
    for i in range(300):
        src = f"s{i % 37} w{i % 5}"
        if i % 3:
            wanted.add(src.encode())
        nums = " ".join(numbers[(3 * i + k) % len(numbers)] for k in range(3))
        lines.append(f"{src} ||| t{i % 11} u ||| {nums} ||| 0-0 ||| 1 1 1".encode() + (b"\r\n" if i % 7 == 0 else b"\n"))
        if i % 50 == 0:
            lines.append(b"no separator here\n")
    data = b"".join(lines)[:-1]
    path = tmp_path / "pt"
    path.write_bytes(data)
    src, tgt, vals = table_filter._read_columns_numpy(path, wanted, 3, progress=False)
    for block_size in (1 << 24, 37, 4096):
        cols = table_filter._scan(path, wanted, 3, False, block_size=block_size)
        assert [cols.sources[i] for i in cols.source_ids] == src
        assert [cols.targets[i] for i in cols.target_ids] == tgt
        assert len(cols.targets) == len(set(tgt)) == 11
        assert cols.scores.view(np.int64).tolist() == vals.view(np.int64).tolist()
    compiled = table_filter.read_table(path, wanted, 3, progress=False)
    monkeypatch.setattr(table_filter, "table_scan", None)
    plain = table_filter.read_table(path, wanted, 3, progress=False)
    assert (plain.sources, plain.targets) == (compiled.sources, compiled.targets)
    assert plain.digest() == compiled.digest()
