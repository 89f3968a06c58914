"""Scoring with several processes (torch.distributed, gloo on the CPU): the parts are planned on
the chunk boundaries of one process, so the joined table is the same bytes; a rank killed with
SIGKILL fails the job, naming the rank and its part, and --resume finishes it with any number of
processes."""
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
import torch

from rescorer.score_table import chunks, plan_parts

from conftest import ROOT, first_lines, table_with_model


@pytest.fixture(scope="module")
def table_and_model(tmp_path_factory, moses_table):
    """The first 6,000 lines of the Moses baseline table (sources with many targets each) and a
    small untrained network over their words."""
    d = tmp_path_factory.mktemp("dist")
    lines = first_lines(moses_table, 6000)
    table, model = table_with_model(d, lines, 500, hidden=32, rank=16, maxout=16)
    return d, table, model, lines


def score(*args, env=None, check=True):
    r = subprocess.run([sys.executable, "-m", "rescorer", "score", "-q", *map(str, args)], cwd=ROOT,
                       env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise AssertionError(r.stderr)
    return r


def test_parts_end_on_the_chunk_boundaries_of_one_process(table_and_model):
    d, table, model, lines = table_and_model
    sources = [ln.split(b" ||| ")[0] for ln in lines]
    ends, n = set(), 0
    for c in chunks(iter(sources), 100, key=lambda s: s):
        n += len(c)
        ends.add(n)
    parts, total = plan_parts(str(table), 3, 100)
    assert total == 6000 and parts[0][0] == 1 and parts[-1][1] == 6000
    assert all(b[0] == a[1] + 1 for a, b in zip(parts, parts[1:]))
    assert all(last in ends for _, last in parts)
    assert all(abs((last - first + 1) - 2000) <= 4 * 100 for first, last in parts)


@pytest.mark.parametrize("name", ["out.gz", "out.txt"])
def test_two_ranks_write_the_bytes_of_one_process(table_and_model, name):
    d, table, model, _ = table_and_model
    one, two = d / f"one-{name}", d / f"two-{name}"
    score("--phrase-table", table, "--model", model, "--out", one, "--chunk-lines", 100, "--unk-count")
    r = score("--phrase-table", table, "--model", model, "--out", two, "--chunk-lines", 100, "--unk-count",
              "--workers", 2)
    assert "rank 1: part 1 = lines" in r.stderr
    assert two.read_bytes() == one.read_bytes()
    assert sorted(os.listdir(d)) == sorted(set(os.listdir(d)) - {p for p in os.listdir(d) if ".part" in p})


def test_the_bytes_do_not_depend_on_the_number_of_threads(table_and_model):
    """1 thread, 2 threads and 2 processes: the same bytes (each chunk is scored on one thread)."""
    d, table, model, _ = table_and_model
    outs = {}
    for name, extra, threads in (("t1", [], 1), ("t2", [], 2), ("w2", ["--workers", 2], 1)):
        outs[name] = d / f"threads-{name}.gz"
        r = score("--phrase-table", table, "--model", model, "--out", outs[name], "--chunk-lines", 500, *extra,
                  env={"OMP_NUM_THREADS": str(threads)})
        if name == "w2":
            assert "in 2 parts by 2 processes" in r.stderr
    assert outs["t1"].read_bytes() == outs["t2"].read_bytes() == outs["w2"].read_bytes()


def test_a_rank_killed_after_the_output_is_written_leaves_the_job_successful(tmp_path):
    """run_workers in a process of its own (torchrun's agent must not fork this one)."""
    out = tmp_path / "out.txt"
    job = ("import sys; from rescorer.distributed import WorkerError, run_workers\n"
           "try:\n"
           "    rc = run_workers(2, 'rank_killed_after_output', [sys.argv[1]],\n"
           "                     what=lambda rank: ': unfinished', output=sys.argv[1] if sys.argv[2] == 'yes' else None)\n"
           "except WorkerError as e:\n"
           "    sys.exit(f'WorkerError: {e}')\n"
           "sys.exit(rc)\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "tests")}

    def run(check_output):
        return subprocess.run([sys.executable, "-c", job, str(out), check_output], env=env, capture_output=True,
                              text=True, timeout=300)
    r = run("yes")
    assert r.returncode == 0 and "rank 1 was killed by SIGTERM after the job had written" in r.stderr, r.stderr
    out.unlink()
    r = run("no")    # without an output to check, the killed rank fails the job
    assert r.returncode == 1 and "WorkerError: rank 1 was killed by SIGTERM: unfinished" in r.stderr, r.stderr


def _rank_processes(tag: str) -> dict[int, int]:
    """pid of each rank process started with the environment variable TEST_TAG=tag."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
        except OSError:
            continue
        if f"TEST_TAG={tag}".encode() in env:
            rank = next((e[5:] for e in env if e.startswith(b"RANK=")), None)
            if rank is not None:
                found[int(rank)] = int(pid)
    return found


def test_killed_rank_fails_the_job_and_resume_finishes_it_with_any_number_of_processes(table_and_model):
    d, table, model, _ = table_and_model
    one, out = d / "k-one.gz", d / "k-out.gz"
    score("--phrase-table", table, "--model", model, "--out", one, "--chunk-lines", 20)
    tag = uuid.uuid4().hex
    args = ["--phrase-table", table, "--model", model, "--out", out, "--chunk-lines", 20]
    job = subprocess.Popen([sys.executable, "-m", "rescorer", "score", "-q", *map(str, args), "--workers", "2"],
                           cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1", "TEST_TAG": tag},
                           stderr=subprocess.PIPE, text=True)
    state = f"{out}.part-1.partial.json"
    deadline = time.time() + 120
    while not os.path.exists(state) and time.time() < deadline and job.poll() is None:
        time.sleep(0.01)
    assert os.path.exists(state), "rank 1 never wrote a chunk"
    os.kill(_rank_processes(tag)[1], signal.SIGKILL)
    err = job.communicate(timeout=120)[1]
    assert job.returncode != 0
    assert "rank 1 was killed by SIGKILL: part 1 (lines " in err, err
    assert f"of {table}) not finished" in err and "--resume" in err
    assert not out.exists()                         # nothing joined before every part is complete
    assert os.path.exists(f"{out}.parts.json")
    # without --resume the leftovers are not silently thrown away
    r = score(*args, check=False)
    assert r.returncode == 1 and "parts.json is left from an interrupted run" in r.stderr
    # one process finishes what two started: every part, resumed where it stopped
    r = score(*args, "--resume", "-v")
    assert "resuming" in r.stderr
    assert out.read_bytes() == one.read_bytes()
    assert not any(".part" in p for p in os.listdir(d) if p.startswith("k-out"))


def run_cli(*args):
    r = subprocess.run([sys.executable, "-m", "rescorer", *map(str, args)], cwd=ROOT,
                       env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError(r.stderr)
    return r


def checkpoint(path):
    return torch.load(path, map_location="cpu", weights_only=False)


def assert_same_training(a, b, tol=1e-5):
    """Same weights within float tolerance, and validation perplexities that moved from the start."""
    ca, cb = checkpoint(a), checkpoint(b)
    assert ca["model"].keys() == cb["model"].keys()
    worst = max((ca["model"][k].double() - cb["model"][k].double()).abs().max().item() for k in ca["model"])
    assert worst < tol, worst
    va, vb = ca["trainer"]["history"]["valid"], cb["trainer"]["history"]["valid"]
    assert va[-1][0] == vb[-1][0] and va[-1][1] == pytest.approx(vb[-1][1], rel=1e-5)
    assert va[-1][1] < va[0][1]   # the updates did train the network


@pytest.mark.parametrize("batching", ["uniform", "by-source", "sampled"])
def test_two_ranks_make_the_updates_of_one_process_and_resume_from_their_checkpoint(table_and_model, batching):
    """2 ranks with half of each minibatch of 16 make the updates one process makes with all 16;
    a 2-rank run stopped after 2 updates and resumed to 4 ends where the 1-process run does."""
    d, table, _, _ = table_and_model
    if not (d / "vocab").exists():
        run_cli("vocab", "-q", "--phrase-table", table, "--size", 400, "--out", d / "vocab")
    common = ["train", "-q", "--phrase-table", table, "--vocab", d / "vocab", "--hidden", 16, "--rank", 8,
              "--maxout-units", 8, "--batch-size", 16, "--valid-fraction", 0.02, "--optimizer", "adam",
              "--lr", 0.01] + (["--sampled-softmax", 50] if batching == "sampled" else ["--batching", batching])
    one, two = d / f"one-{batching}", d / f"two-{batching}"
    run_cli(*common, "--out", one, "--max-updates", 4)
    r = run_cli(*common, "--out", two, "--max-updates", 2, "--workers", 2)
    assert "and 1 more processes" in r.stderr
    r = run_cli(*common, "--out", two, "--max-updates", 4, "--workers", 2, "--resume")
    assert "resuming" in r.stderr and "at update 2" in r.stderr
    assert json.loads((two / "summary.json").read_text())["updates"] == 4
    assert_same_training(one / "last.pt", two / "last.pt")


@pytest.mark.parametrize("softmax", [[], ["--sampled-softmax", 40]])
def test_two_ranks_train_the_cslm_as_one_process(table_and_model, tmp_path, softmax):
    d, _, _, lines = table_and_model
    text = tmp_path / "fr.txt"
    text.write_text("".join(ln.split(b" ||| ")[1].decode() + "\n" for ln in lines))
    common = ["cslm-train", "-q", "--text", text, "--shortlist", 300, "--order", 3, "--embed", 8, "--hidden", 16,
              "--batch-size", 32, "--valid-fraction", 0.05, "--optimizer", "adam", "--max-updates", 3, *softmax]
    run_cli(*common, "--out", tmp_path / "one")
    run_cli(*common, "--out", tmp_path / "two", "--workers", 2)
    assert (tmp_path / "one" / "target.vocab").read_bytes() == (tmp_path / "two" / "target.vocab").read_bytes()
    assert_same_training(tmp_path / "one" / "last.pt", tmp_path / "two" / "last.pt")
