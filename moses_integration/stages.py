"""Experiments in stages that are skipped when their outputs are up to date (as Moses's
``experiment.perl`` does): the runner of the Moses pipeline and of every experiment.

A stage names its inputs, its outputs and its settings; it runs when an output is missing or
when the stamp it left (``WORK/stamps/STAGE.json``: settings plus size and SHA-256 of every
input) no longer matches.  Inputs are compared by content, not by modification time, so a
copied, re-mounted or touched input does not make days of training run again; a file is
hashed only when its size or modification time differs from the last time it was hashed
(``WORK/stamps/hashes.json``).  Outputs are written under temporary names and renamed
into place by the stage functions, so an interrupted stage simply runs again.  Every stage
logs its time and peak memory; with ``isolate`` each runs in a process of its own.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import logging
import os
import resource
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from rescorer.fileio import file_digest

log = logging.getLogger(__name__)


@dataclass
class Stage:
    """``resume`` is set before ``run`` is called: True when an earlier attempt of this stage, with
    the same settings and inputs, was interrupted, so that what it left may be continued (a
    checkpoint, a partial output); False when it must start afresh."""
    name: str
    inputs: list[str]
    outputs: list[str]
    run: Callable[[], dict | None]
    settings: dict = field(default_factory=dict)
    resume: bool = False
    isolated: bool = True   # False: a light stage, run in the calling process even with ``isolate``
    # inputs compared by what a function reads from them rather than by all their bytes (a tuning
    # result compared by its weights, not by the times it also records)
    compare: dict[str, Callable[[str], object]] = field(default_factory=dict)


class ContentHashes:
    """SHA-256 of files, remembered in a JSON file under (size, modification time, change time
    in ns), so a file is read again only when one of them changed (the change time also moves
    when the modification time is set back by hand)."""

    def __init__(self, path: str):
        self.path = path
        self.known: dict = {}
        if os.path.exists(path):
            try:
                with open(path) as f:
                    self.known = json.load(f)
            except (OSError, ValueError):  # a damaged cache only costs hashing again
                self.known = {}

    def __call__(self, path: str) -> str:
        path = os.path.abspath(path)
        st = os.stat(path)
        seen = self.known.get(path)
        key = [st.st_size, st.st_mtime_ns, st.st_ctime_ns]
        if seen and seen[:3] == key:
            return seen[3]
        digest = file_digest(path)
        self.known[path] = key + [digest]
        tmp = f"{self.path}.{os.getpid()}.tmp"  # its own: a report may be written while stages run
        with open(tmp, "w") as f:
            json.dump(self.known, f, indent=0)
        os.replace(tmp, self.path)
        return digest


def _fingerprint(stage: Stage, digest: Callable[[str], str]) -> dict:
    files = {os.path.abspath(p): ["compared by", stage.compare[p](p)] if p in stage.compare
             else [os.path.getsize(p), digest(p)] for p in stage.inputs}
    # through JSON, as the stamp is stored: a tuple in the settings compares equal to its reading
    return json.loads(json.dumps({"settings": stage.settings, "inputs": files}))


def peak_memory_mb() -> float:
    """Peak resident memory of this process and of its finished children (MB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024


def die_with_parent() -> None:
    """Linux: this process gets SIGKILL when its parent dies (a killed run leaves no orphan)."""
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _run_isolated(st: Stage, argv: list[str]) -> tuple[dict, float]:
    """Run a stage in a new process, ``argv`` plus ``--stage-record FILE`` (and ``--stage-resume``):
    (the record it wrote, its peak resident memory with that of the processes it waited for, MB).
    A new interpreter, not a fork: a forked child of a process whose torch has already run its
    thread pool can hang in its first parallel region."""
    fd, tmp = tempfile.mkstemp(prefix=f".stage-{st.name}.", suffix=".json")
    os.close(fd)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        pid = os.posix_spawn(argv[0], argv + ["--stage-record", tmp] + (["--stage-resume"] if st.resume else []),
                             os.environ)
        _, status, usage = os.wait4(pid, 0)
        if status != 0:
            raise RuntimeError(f"stage {st.name} failed (its message is above)")
        with open(tmp) as f:
            return json.load(f), usage.ru_maxrss / 1024
    finally:
        os.unlink(tmp)


def stage_command(script: str, args: list[str]) -> Callable[[Stage], list[str]]:
    """``isolate`` for ``run_stages``: each stage runs as ``python SCRIPT ARGS --run-stage NAME``;
    the script answers that with ``run_one_stage`` (see ``add_stage_arguments``)."""
    return lambda st: [sys.executable, os.path.abspath(script), *args, "--run-stage", st.name]


def add_stage_arguments(ap) -> None:
    """The options by which ``run_stages`` starts one stage in a process of its own (hidden)."""
    ap.add_argument("--run-stage", help=argparse.SUPPRESS)
    ap.add_argument("--stage-record", help=argparse.SUPPRESS)
    ap.add_argument("--stage-resume", action="store_true", help=argparse.SUPPRESS)


def run_one_stage(stages: list[Stage], a) -> dict:
    """In the process started for it: run the stage ``a.run_stage`` and write its record."""
    die_with_parent()
    st = next((s for s in stages if s.name == a.run_stage), None)
    if st is None:
        raise ValueError(f"no stage {a.run_stage!r}")
    st.resume = a.stage_resume
    info = st.run() or {}
    with open(a.stage_record, "w") as f:
        json.dump(info, f)
    return info


class StageClock:
    """A stage's wall time, summed over the runs of it that were interrupted and resumed: while
    the stage runs, the time so far is written to ``path`` every ``every`` seconds (a kill -9
    loses at most that much of it), and a resumed run starts from what the file holds."""

    def __init__(self, path: str, resume: bool, every: float = 30.0):
        self.path, self.every = path, every
        self.earlier = 0.0
        if resume:
            try:
                with open(path) as f:
                    self.earlier = float(f.read())
            except (OSError, ValueError):  # no record of the interrupted run: its time is lost
                self.earlier = 0.0
        self.seconds = self.earlier

    def _write(self) -> None:
        self.seconds = self.earlier + time.time() - self.t0
        with open(self.path + ".tmp", "w") as f:
            f.write(f"{self.seconds:.1f}\n")
        os.replace(self.path + ".tmp", self.path)

    def _beat(self) -> None:
        while not self.stop.wait(self.every):
            self._write()

    def __enter__(self):
        self.t0 = time.time()
        self.stop = threading.Event()
        self._write()
        self.thread = threading.Thread(target=self._beat, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self._write()
        return False

    def forget(self) -> None:
        if os.path.exists(self.path):
            os.unlink(self.path)


def _started_path(stamps: str, st: Stage) -> str:
    """The marker of a run of the stage that began and has not finished (its fingerprint)."""
    return os.path.join(stamps, f"{st.name}.started.json")


def _up_to_date(st: Stage, stamp_path: str, want: dict) -> dict | None:
    """The record of the stage's last run when its outputs exist and its stamp matches ``want``
    (the fingerprint of its inputs and settings now); else None."""
    if not (all(os.path.exists(p) for p in st.outputs) and os.path.exists(stamp_path)):
        return None
    with open(stamp_path) as f:
        old = json.load(f)
    return old.get("record", {}) if old.get("fingerprint") == want else None


def stage_status(stages: list[Stage], work: str) -> list[dict]:
    """Without running anything, a record per stage: that of its last run when it is up to date
    (``skipped``), else ``pending`` (and ``started`` when a run of it began and did not finish:
    it is running now or was interrupted)."""
    stamps = os.path.join(work, "stamps")
    digest = ContentHashes(os.path.join(stamps, "hashes.json"))
    out = []
    for st in stages:
        rec, stamp_path = None, os.path.join(stamps, f"{st.name}.json")
        if os.path.exists(stamp_path) and all(os.path.exists(p) for p in st.inputs):
            rec = _up_to_date(st, stamp_path, _fingerprint(st, digest))
        if rec is not None:
            out.append({"stage": st.name, "skipped": True, **rec})
        else:
            started = os.path.exists(_started_path(stamps, st))
            out.append({"stage": st.name, "pending": True, **({"started": True} if started else {})})
    return out


def run_stages(stages: list[Stage], work: str, force: bool = False,
               isolate: Callable[[Stage], list[str]] | None = None) -> list[dict]:
    """Run the stages in order, skipping those that are up to date; a record per stage.  With
    ``isolate`` (the command line of a process that runs one stage) every stage runs in a
    process of its own, so its peak memory is its own."""
    stamps = os.path.join(work, "stamps")
    os.makedirs(stamps, exist_ok=True)
    digest = ContentHashes(os.path.join(stamps, "hashes.json"))
    report = []
    for st in stages:
        missing = [p for p in st.inputs if not os.path.exists(p)]
        if missing:
            raise FileNotFoundError(f"stage {st.name}: input {missing[0]} does not exist")
        stamp_path = os.path.join(stamps, f"{st.name}.json")
        want = _fingerprint(st, digest)
        old = None if force else _up_to_date(st, stamp_path, want)
        if old is not None:
            log.info("stage %s: up to date, skipped", st.name)
            report.append({"stage": st.name, "skipped": True, **old})
            continue
        started = _started_path(stamps, st)
        st.resume = False
        if os.path.exists(started):
            with open(started) as f:
                st.resume = json.load(f) == want
        with open(started + ".tmp", "w") as f:
            json.dump(want, f)
        os.replace(started + ".tmp", started)
        log.info("stage %s: %s", st.name, "resuming" if st.resume else "running")
        clock = StageClock(os.path.join(stamps, f"{st.name}.elapsed"), st.resume)
        with clock:
            if isolate and st.isolated:
                info, peak = _run_isolated(st, isolate(st))
            elif isolate:  # the caller's peak is not this stage's
                info, peak = st.run() or {}, None
            else:
                info, peak = st.run() or {}, peak_memory_mb()
        rec = {"stage": st.name, "seconds": round(clock.seconds, 1),
               "peak_memory_mb": None if peak is None else round(peak), **info}
        if clock.earlier:
            rec["interrupted_runs_seconds"] = round(clock.earlier, 1)
        log.info("stage %s: done in %.0f s%s %s", st.name, rec["seconds"],
                 "" if peak is None else f" (peak memory {'' if isolate else 'so far '}{peak:.0f} MB)", info or "")
        with open(stamp_path + ".tmp", "w") as f:
            json.dump({"fingerprint": want, "record": rec}, f, indent=1)
        os.replace(stamp_path + ".tmp", stamp_path)
        os.unlink(started)
        clock.forget()
        report.append(rec)
    return report
