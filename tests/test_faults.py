"""The fault suite: every command against damaged input, mismatched models, outputs it must not
replace or cannot write, a full disk, and kill -9.  Each case checks the message (the file, and
the line where there is one) and that no final output is left; a run that can be resumed is
resumed and compared with one that was never interrupted."""
import gzip
import os
import pathlib
import resource
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import ROOT, first_lines
from rescorer.checkpoint import save_checkpoint, save_cslm_checkpoint
from rescorer.cli import main
from rescorer.cslm import CSLM, CSLMConfig
from rescorer.fileio import atomic_write
from rescorer.model import ModelConfig, RNNEncoderDecoder
from rescorer.vocab import load_vocab_dir
from test_decoder import make_model

BAD_LINE = 300


@pytest.fixture(scope="module")
def kit(tmp_path_factory, moses_table):
    """400 real phrase-table lines, their vocabularies, a tiny RNN and CSLM over them, the French
    side as text, and a tiny Moses system for decode and tune."""
    d = tmp_path_factory.mktemp("faults")
    lines = first_lines(moses_table, 400)
    with gzip.open(d / "good.gz", "wb") as f:
        f.writelines(lines)
    assert main(["vocab", "-q", "--phrase-table", str(d / "good.gz"), "--size", "200", "--out", str(d / "vocab")]) == 0
    sv, tv = load_vocab_dir(str(d / "vocab"))
    torch.manual_seed(0)
    save_checkpoint(d / "model.pt", RNNEncoderDecoder(ModelConfig(len(sv), len(tv), hidden=8, rank=4, maxout_units=4)),
                    sv, tv, inverse=False)
    save_cslm_checkpoint(d / "cslm.pt", CSLM(CSLMConfig(len(tv), order=3, embed=4, hidden=(8,))), tv, {})
    (d / "good.txt").write_bytes(b"".join(ln.split(b" ||| ")[1] + b"\n" for ln in lines))
    (d / "sys").mkdir()
    ini = make_model(d / "sys", 5)
    (d / "in.en").write_text("a b\nc d\na c b\n")
    (d / "ref.fr").write_text("x y\nz w\nx z y\n")
    return {"dir": d, "lines": lines, "ini": ini}


def damaged_table(kit, kind: str) -> pathlib.Path:
    lines = list(kit["lines"])
    f = lines[BAD_LINE - 1].rstrip(b"\n").split(b" ||| ")
    if kind == "utf8":
        f[1] += b" \xff"
    elif kind == "fields":
        f = f[:2]
    elif kind == "scores":
        f[2] = b" ".join(f[2].split()[:-1])
    elif kind == "nan":
        f[2] = b" ".join([b"nan"] + f[2].split()[1:])
    elif kind == "empty":
        f[0] = b" "
    lines[BAD_LINE - 1] = b" ||| ".join(f) + b"\n"
    data = gzip.compress(b"".join(lines))
    path = kit["dir"] / f"bad-{kind}.gz"
    path.write_bytes(data[:len(data) // 2] if kind == "truncated" else data)
    return path


def damaged_text(kit, kind: str, good: str = "good.txt") -> pathlib.Path:
    lines = (kit["dir"] / good).read_bytes().splitlines(keepends=True)
    if kind == "utf8":
        lines[min(BAD_LINE, len(lines)) - 1] = b"la \xff maison\n"
        path = kit["dir"] / f"bad-utf8-{good}"
        path.write_bytes(b"".join(lines))
    else:
        data = gzip.compress(b"".join(lines * (200 if len(lines) < 10 else 1)))
        path = kit["dir"] / f"bad-truncated-{good}.gz"
        path.write_bytes(data[:len(data) // 2])
    return path


def expect_error(caplog, args, where: str) -> str:
    """The command fails (status 1) with one message that starts with ``where`` (FILE:LINE)."""
    caplog.clear()
    assert main([str(a) for a in args]) == 1
    msgs = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert msgs and msgs[-1].startswith(where), msgs
    return msgs[-1]


def where(path, kind):
    return f"{path}:" if kind == "truncated" else f"{path}:{BAD_LINE}: "


KINDS = ["truncated", "utf8", "fields", "scores", "nan", "empty"]


@pytest.mark.parametrize("kind", KINDS)
def test_damaged_tables(kit, caplog, kind):
    d, bad = kit["dir"], damaged_table(kit, kind)
    out = d / f"scored-{kind}.gz"
    msg = expect_error(caplog, ["score", "-q", "--phrase-table", bad, "--model", d / "model.pt", "--out", out],
                       where(bad, kind))
    if kind == "truncated":
        assert msg.endswith("compressed stream ends early (truncated?)") and int(msg.split(":")[1]) > 1
    assert not [p for p in os.listdir(d) if p.startswith(out.name)]
    run = d / f"run-{kind}"
    expect_error(caplog, ["train", "-q", "--phrase-table", bad, "--vocab", d / "vocab", "--out", run, "--hidden", 8,
                          "--rank", 4, "--maxout-units", 4, "--max-updates", 2], where(bad, kind))
    assert sorted(os.listdir(run)) == ["train.log"]     # no checkpoint, no half-prepared data
    expect_error(caplog, ["vocab", "-q", "--phrase-table", bad, "--size", 50, "--out", d / f"v-{kind}"],
                 where(bad, kind))
    assert not (d / f"v-{kind}").exists()


@pytest.mark.parametrize("kind", ["truncated", "utf8"])
def test_damaged_text(kit, caplog, kind):
    d = kit["dir"]
    text = damaged_text(kit, kind)
    run = d / f"cslm-{kind}"
    expect_error(caplog, ["cslm-train", "-q", "--text", text, "--shortlist", 50, "--order", 3, "--embed", 4,
                          "--hidden", 8, "--max-updates", 2, "--out", run], where(text, kind))
    assert sorted(os.listdir(run)) == ["train.log"]
    out = d / f"cslm-scores-{kind}"
    expect_error(caplog, ["cslm-score", "-q", "--model", d / "cslm.pt", "--input", text, "--output", out],
                 where(text, kind))
    assert not out.exists()
    src = damaged_text(kit, kind, "in.en")
    line = f"{src}:" if kind == "truncated" else f"{src}:3: "
    out = d / f"decoded-{kind}"
    expect_error(caplog, ["decode", "-q", "--ini", kit["ini"], "--input", src, "--output", out], line)
    assert not out.exists()
    ref = damaged_text(kit, kind, "ref.fr")
    out = d / f"tuned-{kind}.ini"
    expect_error(caplog, ["tune", "-q", "--ini", kit["ini"], "--input", d / "in.en", "--ref", ref, "--out-ini", out,
                          "--max-iter", 1, "--nbest", 5],
                 f"{ref}:" if kind == "truncated" else f"{ref}:3: ")
    assert not out.exists()


def test_models_that_do_not_match(kit, caplog):
    d = kit["dir"]
    expect_error(caplog, ["score", "-q", "--phrase-table", d / "good.gz", "--model", d / "cslm.pt", "--out", d / "o.gz"],
                 f"{d / 'cslm.pt'}: not a phrase-rescorer RNN Encoder-Decoder checkpoint")
    expect_error(caplog, ["cslm-score", "-q", "--model", d / "model.pt", "--input", d / "good.txt", "--output",
                          d / "o.txt"], f"{d / 'model.pt'}: not a phrase-rescorer CSLM checkpoint")
    (d / "junk.pt").write_bytes(b"not a checkpoint")
    expect_error(caplog, ["score", "-q", "--phrase-table", d / "good.gz", "--model", d / "junk.pt", "--out", d / "o.gz"],
                 f"{d / 'junk.pt'}: not a readable checkpoint")
    assert main(["vocab", "-q", "--phrase-table", str(d / "good.gz"), "--size", "50", "--out", str(d / "vocab50")]) == 0
    expect_error(caplog, ["score", "-q", "--phrase-table", d / "good.gz", "--model", d / "model.pt", "--vocab",
                          d / "vocab50", "--out", d / "o.gz"], f"{d / 'model.pt'}: the model's target vocabulary")
    assert not (d / "o.gz").exists() and not (d / "o.txt").exists()


def test_outputs_are_not_replaced_unasked(kit, caplog):
    d = kit["dir"]
    cases = [
        (["score", "--phrase-table", d / "good.gz", "--model", d / "model.pt", "--out"], d / "keep.gz"),
        (["cslm-score", "--model", d / "cslm.pt", "--input", d / "good.txt", "--output"], d / "keep.txt"),
        (["decode", "--ini", kit["ini"], "--input", d / "in.en", "--output"], d / "keep.out"),
        (["tune", "--ini", kit["ini"], "--input", d / "in.en", "--ref", d / "ref.fr", "--max-iter", 1, "--nbest", 5,
          "--out-ini"], d / "keep.ini"),
    ]
    for args, out in cases:
        out.write_text("precious\n")
        expect_error(caplog, [args[0], "-q", *args[1:], out], f"{out} exists; pass --overwrite to replace it")
        assert out.read_text() == "precious\n"
    (d / "keepv").mkdir()
    (d / "keepv" / "source.vocab").write_text("precious\n")
    expect_error(caplog, ["vocab", "-q", "--phrase-table", d / "good.gz", "--size", 50, "--out", d / "keepv"],
                 f"{d / 'keepv' / 'source.vocab'} exists")
    assert (d / "keepv" / "source.vocab").read_text() == "precious\n"


def test_outputs_get_the_permissions_open_would_give(tmp_path):
    """An output written through a temporary file is as readable as one open() would make (the
    temporary file is made private, 0600; the output must not stay so on a shared machine)."""
    old = os.umask(0o022)
    try:
        for umask, want in ((0o022, 0o644), (0o027, 0o640)):
            os.umask(umask)
            with atomic_write(tmp_path / f"out{umask}.txt", "w") as f:
                f.write("x\n")
            with open(tmp_path / f"plain{umask}.txt", "w") as f:
                f.write("x\n")
            modes = [os.stat(tmp_path / f"{n}{umask}.txt").st_mode & 0o777 for n in ("out", "plain")]
            assert modes == [want, want]
            assert os.umask(umask) == umask   # reading it put it back
    finally:
        os.umask(old)


def test_an_output_directory_that_cannot_be_made(kit, caplog):
    d = kit["dir"]
    afile = d / "good.txt"
    for args, out in [
        (["score", "-q", "--phrase-table", d / "good.gz", "--model", d / "model.pt", "--out"], afile / "o.gz"),
        (["cslm-score", "-q", "--model", d / "cslm.pt", "--input", d / "good.txt", "--output"], afile / "o"),
        (["decode", "-q", "--ini", kit["ini"], "--input", d / "in.en", "--output"], afile / "o"),
        (["tune", "-q", "--ini", kit["ini"], "--input", d / "in.en", "--ref", d / "ref.fr", "--out-ini"], afile / "o"),
    ]:
        expect_error(caplog, [*args, out], f"cannot write {out}: {afile} is a file, not a directory")
    for cmd in (["train", "--phrase-table", d / "good.gz", "--vocab", d / "vocab"],
                ["cslm-train", "--text", d / "good.txt", "--shortlist", 50]):
        caplog.clear()
        assert main([str(a) for a in [cmd[0], "-q", *cmd[1:], "--out", afile / "run"]]) == 1
        assert str(afile / "run") in caplog.text


def rescorer(*args, fsize=None, **kw):
    """``python -m rescorer ARGS``; with ``fsize`` no file may grow past that many bytes (a full disk)."""
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # the write fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    return subprocess.run([sys.executable, "-m", "rescorer", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          preexec_fn=limit if fsize else None, **kw)


def test_full_disk_keeps_what_can_be_resumed_and_nothing_else(kit):
    d = kit["dir"]
    args = ["score", "-q", "--phrase-table", d / "good.gz", "--model", d / "model.pt", "--chunk-lines", 20]
    assert rescorer(*args, "--out", d / "whole.gz").returncode == 0
    r = rescorer(*args, "--out", d / "full.gz", fsize=6000)
    assert r.returncode == 1
    assert f"cannot write {d / 'full.gz'}.partial: File too large; the lines scored before are kept" in r.stderr
    assert not (d / "full.gz").exists()
    assert rescorer(*args, "--out", d / "full.gz", "--resume").returncode == 0
    assert (d / "full.gz").read_bytes() == (d / "whole.gz").read_bytes()
    # a full disk before the first chunk: nothing is left to block the next run
    r = rescorer(*args, "--out", d / "full0.gz", fsize=100)
    assert "nothing of it was kept" in r.stderr and not [p for p in os.listdir(d) if p.startswith("full0")]
    r = rescorer("cslm-score", "--model", d / "cslm.pt", "--input", d / "good.txt", "--output", d / "full.txt",
                 fsize=500)
    assert r.returncode == 1 and f"cannot write {d / 'full.txt'}: File too large" in r.stderr
    assert not [p for p in os.listdir(d) if "full.txt" in p]


def kill_when(proc, path, timeout=120):
    """SIGKILL ``proc`` as soon as ``path`` exists (False if it finished first)."""
    deadline = time.time() + timeout
    while not os.path.exists(path):
        if proc.poll() is not None or time.time() > deadline:
            return False
        time.sleep(0.005)
    proc.kill()
    proc.wait()
    return True


def test_kill_9_then_resume(kit, moses_table, tmp_path):
    """score: the same bytes as an uninterrupted run; train and cslm-train: the same weights."""
    big = tmp_path / "big.gz"
    with gzip.open(moses_table, "rb") as f, gzip.open(big, "wb") as g:
        for i, line in enumerate(f):
            if i == 20000:
                break
            g.write(line)
    d = kit["dir"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "rescorer"]
    runs = {
        "score": (["score", "-q", "--phrase-table", big, "--model", d / "model.pt", "--chunk-lines", 20, "--out"],
                  lambda out: f"{out}.partial.json", lambda out: out),
        "train": (["train", "-q", "--phrase-table", d / "good.gz", "--vocab", d / "vocab", "--hidden", 8, "--rank", 4,
                   "--maxout-units", 4, "--batch-size", 8, "--max-updates", 300, "--valid-fraction", 0.02,
                   "--checkpoint-minutes", 0, "--out"], lambda out: out / "last.pt", lambda out: out / "last.pt"),
        "train-by-source": (["train", "-q", "--phrase-table", d / "good.gz", "--vocab", d / "vocab", "--hidden", 8,
                             "--rank", 4, "--maxout-units", 4, "--batch-size", 8, "--max-updates", 300,
                             "--valid-fraction", 0.02, "--checkpoint-minutes", 0, "--batching", "by-source",
                             "--per-source", 3, "--precision", "bf16", "--out"],
                            lambda out: out / "last.pt", lambda out: out / "last.pt"),
        "cslm-train": (["cslm-train", "-q", "--text", d / "good.txt", "--vocab", d / "vocab", "--order", 3,
                        "--embed", 4, "--hidden", 8, "--batch-size", 8, "--max-updates", 300, "--valid-fraction",
                        0.05, "--checkpoint-minutes", 0, "--out"], lambda out: out / "last.pt",
                       lambda out: out / "last.pt"),
    }
    for name, (args, marker, result) in runs.items():
        whole, cut = tmp_path / f"{name}-whole", tmp_path / f"{name}-cut"
        if name == "score":
            whole, cut = whole.with_suffix(".gz"), cut.with_suffix(".gz")
        subprocess.run(cmd + [*map(str, args), str(whole)], env=env, check=True, capture_output=True)
        proc = subprocess.Popen(cmd + [*map(str, args), str(cut)], env=env, stderr=subprocess.DEVNULL)
        assert kill_when(proc, marker(cut)), f"{name} finished before it could be killed"
        assert not (name == "score" and cut.exists())
        r = subprocess.run(cmd + [*map(str, args), str(cut), "--resume"], env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        if name == "score":
            assert cut.read_bytes() == whole.read_bytes()
        else:
            a = torch.load(result(whole), map_location="cpu", weights_only=False)
            b = torch.load(result(cut), map_location="cpu", weights_only=False)
            assert a["trainer"]["updates"] == b["trainer"]["updates"] == 300
            for k in a["model"]:
                assert torch.equal(a["model"][k], b["model"][k]), (name, k)
        shutil.rmtree(cut, ignore_errors=True)
