"""Training the networks: one loop (``BaseTrainer``) for the RNN Encoder-Decoder on the unique
pairs of a phrase table (``Trainer``) and for the CSLM on target text (``CSLMTrainer``).

The paper's recipe: Adadelta (rho 0.95, eps 1e-6), minibatches of 64 pairs, and from the
original code gradient-norm clipping at 1 and batches made from length-sorted groups
of 10.  Around it: validation perplexity at regular intervals, ``best.pt`` whenever it
improves, ``last.pt`` every N minutes and at the end, ``--resume`` that continues
exactly (same batches, same optimizer state), a time budget, early stopping, a tqdm bar
and a PNG of the curves.

Under torchrun (or ``--workers``) every rank computes the gradient of its share of each
minibatch (items ``rank``, ``rank + world``, ...), DistributedDataParallel averages them, and the
loss is scaled so that the update is the one a single process makes with the whole minibatch.
Rank 0 validates, decides when to stop and writes the checkpoints, which hold nothing of the
number of ranks: a run resumes with any number of them.

The loss is the negative log-likelihood per pair, averaged over the batch (GroundHog's
cost); perplexities are per target symbol, end-of-sequence included.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict
from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from . import data as pairdata
from . import distributed, machine, ngrams, row_buckets
from .checkpoint import (CheckpointError, check_vocab_matches, load_checkpoint,
                         save_checkpoint, save_cslm_checkpoint)
from .config import DATA_SETTINGS, TrainConfig, TrainError  # noqa: F401  (importable from here too)
from .cslm import CSLM, load_cslm_checkpoint
from .fileio import atomic_write
from .model import ModelConfig, RNNEncoderDecoder, pad
from .plots import plot_curves
from .tree import ForestModel, PrefixForest
from .vocab import Vocabulary

log = logging.getLogger(__name__)


def softmax_words(targets: np.ndarray, n: int, k: int, seed: int, epoch: int, batch: int) -> np.ndarray:
    """The sampled softmax's words V' of one minibatch (Jean et al., 2015): its ``targets`` and
    ``k`` words drawn uniformly from the ``n`` of the shortlist, sorted. With a uniform proposal
    the importance weights' correction is the same for every word of V', so the estimate of the
    full softmax's gradient is the softmax over V'. The draw is a function of (seed, epoch,
    batch), as the batches are: a resumed run draws the same words."""
    drawn = np.random.default_rng((seed, epoch, batch)).choice(n, size=k, replace=False)
    return np.unique(np.concatenate([np.asarray(targets, dtype=np.int64), drawn]))


def evaluate(model: RNNEncoderDecoder, pairs: pairdata.Pairs, device: torch.device,
             batch_size: int = 256) -> tuple[float, int]:
    """Total negative log-likelihood (nats) and number of target symbols of a pair set."""
    model.eval()
    nll, n = 0.0, 0
    with torch.inference_mode():
        for srcs, tgts in pairdata.fixed_batches(pairs, batch_size):
            s, sl = pad(srcs, device)
            t, tl = pad(tgts, device)
            nll -= model(s, sl, t, tl).double().sum().item()
            n += sum(tl)
    model.train()
    return nll, n


def unigram_perplexity(counts: np.ndarray, pairs: pairdata.Pairs) -> float:
    """Perplexity of an add-one unigram model of the training targets on ``pairs``: the baseline."""
    p = (counts + 1.0) / (counts.sum() + len(counts))
    return float(np.exp(-np.log(p[pairs.tgt]).mean()))


class BaseTrainer:
    """The training loop shared by the networks; a subclass says what a model, a batch, the data
    and a checkpoint are (``_new_model``, ``_epoch_batches``, ``_batch_logp``, ``_evaluate``,
    ``_prepare_data``, ``_baseline``, ``_save``, ``_load``)."""
    title = "training"

    def __init__(self, out_dir: str, cfg: TrainConfig, device: torch.device, resume: bool = False,
                 overwrite: bool = False, progress: bool = True):
        cfg.check(self._softmax_words())
        self.rank = distributed.this_rank()
        self.out, self.cfg, self.device = out_dir, cfg, distributed.rank_device(device, self.rank)
        if cfg.precision == "bf16" and self.device.type == "cpu" and self.rank.main:
            lack = machine.bf16_shortfall()
            if lack:
                log.warning("--precision bf16: %s, so bfloat16 products are emulated and slower than fp32", lack)
        self.progress = progress and self.rank.main
        device = self.device
        self.last_path = os.path.join(out_dir, "last.pt")
        self.best_path = os.path.join(out_dir, "best.pt")
        self.data_dir = os.path.join(out_dir, "data")
        os.makedirs(out_dir, exist_ok=True)
        state = None
        if os.path.exists(self.last_path):
            if resume:
                state = self._load_resume_state()
            elif not overwrite:
                raise TrainError(f"{self.last_path} exists: pass --resume to continue that run, "
                                 f"or --overwrite to start again")
        elif resume:
            raise TrainError(f"--resume: no {self.last_path} to resume from")
        if state is None:
            torch.manual_seed(cfg.seed)
            self.model = self._new_model().to(device)
            self.opt = self._optimizer()
            self.epoch, self.batch_in_epoch, self.updates, self.elapsed = 0, 0, 0, 0.0
            self.history = {"train": [], "valid": []}
            self.best, self.bad = math.inf, 0
        self.sched = self._scheduler(state)
        if self.rank.world > 1:  # the data is prepared once, by rank 0; the others read it
            if self.rank.main:
                self._prepare_data()
            distributed.barrier()
            if not self.rank.main:
                self._prepare_data()
        else:
            self._prepare_data()
        self.net = self._network()
        if self.rank.world > 1:
            self.net = DistributedDataParallel(self.net, device_ids=[device] if device.type == "cuda" else None)

    # -- what a subclass says ---------------------------------------------------------------
    def _new_model(self) -> torch.nn.Module:
        raise NotImplementedError

    def _softmax_words(self) -> int:
        """The size of the network's softmax (its output shortlist)."""
        raise NotImplementedError

    def _load(self, path: str) -> tuple[torch.nn.Module, dict | None]:
        """The network of a checkpoint (checked against this run's vocabularies) and its trainer state."""
        raise NotImplementedError

    def _save(self, path: str, trainer_state: dict | None) -> None:
        raise NotImplementedError

    def _prepare_data(self) -> None:
        raise NotImplementedError

    def _baseline(self) -> tuple[float, str]:
        """The validation perplexity of a simple baseline and its name, for the log and the plot."""
        raise NotImplementedError

    def _epoch_batches(self, epoch: int) -> Iterator:
        """The minibatches of an epoch, a pure function of (seed, epoch)."""
        raise NotImplementedError

    def _batch_logp(self, batch, candidates: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
        """Log-probability of each item of a batch (the loss is minus their mean) and the number
        of predicted symbols; the network is called as ``self.net`` (DDP's wrapper under torchrun);
        ``candidates``: the words of a sampled softmax (``_candidates``)."""
        raise NotImplementedError

    def _batch_targets(self, batch) -> np.ndarray:
        """The word ids a minibatch predicts (what a sampled softmax must hold)."""
        raise NotImplementedError

    def _candidates(self, batch) -> torch.Tensor | None:
        """The words the softmax of a whole minibatch's step runs over (before the ranks share
        it, so every rank uses the same); None: the full shortlist."""
        if not self.cfg.sampled_softmax:
            return None
        return torch.from_numpy(softmax_words(self._batch_targets(batch), self._softmax_words(),
                                              self.cfg.sampled_softmax, self.cfg.seed, self.epoch,
                                              self.batch_in_epoch)).to(self.device)

    def _share(self, batch, rank: int, world: int):
        """This rank's items of a minibatch, and the minibatch's size."""
        raise NotImplementedError

    def _evaluate(self) -> tuple[float, int]:
        """Total negative log-likelihood (nats) and number of symbols of the validation set."""
        raise NotImplementedError

    def _describe(self) -> str:
        return ""

    def _network(self) -> torch.nn.Module:
        """The module a minibatch is given to (and that DistributedDataParallel wraps)."""
        return self.model

    # -- shared ----------------------------------------------------------------------------
    def _optimizer(self) -> torch.optim.Optimizer:
        cfg = self.cfg
        # the multi-tensor and fused forms: one pass over all parameters instead of one per tensor
        if cfg.optimizer == "adadelta":
            return torch.optim.Adadelta(self.model.parameters(), lr=cfg.lr or 1.0, rho=cfg.rho, eps=cfg.eps,
                                        foreach=True)
        if cfg.optimizer == "adam":
            return torch.optim.Adam(self.model.parameters(), lr=cfg.lr or 1e-3, fused=True)
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(self.model.parameters(), lr=cfg.lr or 0.1)
        raise TrainError(f"unknown optimizer {cfg.optimizer!r}")

    def _scheduler(self, state: dict | None):
        """Learning-rate decay on a plateau of the validation perplexity, or None; a resumed run
        goes on with its own (the optimizer's state holds the learning rate reached)."""
        cfg = self.cfg
        if not 0 < cfg.lr_decay <= 1:
            raise TrainError(f"learning-rate decay {cfg.lr_decay}: a factor in (0, 1] (1: a constant rate)")
        if cfg.lr_patience < 1:
            raise TrainError(f"learning-rate patience {cfg.lr_patience}: at least 1 validation")
        if cfg.lr_decay == 1.0:
            return None
        # torch's patience counts the bad validations it tolerates: the decay comes on the next one
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(self.opt, mode="min", factor=cfg.lr_decay,
                                                           patience=cfg.lr_patience - 1)
        if state and state.get("scheduler"):
            sched.load_state_dict(state["scheduler"])
        return sched

    def _load_resume_state(self) -> dict:
        model, st = self._load(self.last_path)
        if not st:
            raise CheckpointError(f"{self.last_path}: holds no trainer state to resume from")
        if st["config"]["inverse"] != self.cfg.inverse:
            raise TrainError(f"{self.last_path}: was trained with inverse={st['config']['inverse']}")
        # the run's own data settings win: the batches must be the ones it would have seen
        for k in DATA_SETTINGS:
            setattr(self.cfg, k, st["config"].get(k, getattr(TrainConfig, k)))
        self.model = model.to(self.device)
        self.model.train()
        self.cfg.optimizer = st["config"]["optimizer"]  # the run's own way of training, as its batches
        self.cfg.sampled_softmax = st["config"].get("sampled_softmax", 0)
        self.opt = self._optimizer()
        self.opt.load_state_dict(st["optimizer"])
        self.epoch, self.batch_in_epoch = st["epoch"], st["batch_in_epoch"]
        self.updates, self.elapsed = st["updates"], st["elapsed"]
        self.history, self.best, self.bad = st["history"], st["best"], st["bad"]
        torch.set_rng_state(st["torch_rng"])
        log.info("resuming %s at update %d (epoch %d, batch %d, %.1f min trained)",
                 self.last_path, self.updates, self.epoch, self.batch_in_epoch, self.elapsed / 60)
        return st

    # -- saving -----------------------------------------------------------------------------
    def _trainer_state(self) -> dict:
        return {"config": asdict(self.cfg), "optimizer": self.opt.state_dict(), "epoch": self.epoch,
                "batch_in_epoch": self.batch_in_epoch, "updates": self.updates, "elapsed": self.elapsed,
                "history": self.history, "best": self.best, "bad": self.bad,
                "scheduler": self.sched.state_dict() if self.sched else None,
                "torch_rng": torch.get_rng_state()}

    def save_last(self) -> None:
        self._save(self.last_path, self._trainer_state())

    def validate(self) -> float:
        """Validation perplexity (rank 0 computes it, every rank keeps the same record of it)."""
        ppl = None
        if self.rank.main:
            self.model.eval()
            with torch.inference_mode():
                nll, n = self._evaluate()
            self.model.train()
            ppl = math.exp(nll / n)
        if self.rank.world > 1:
            box = [ppl, self.elapsed]
            dist.broadcast_object_list(box, src=0)
            ppl, self.elapsed = box
        self.history["valid"].append((self.updates, ppl))
        # training minutes at each validation, for curves against time (what a budget buys)
        self.history.setdefault("valid_minutes", []).append(round(self.elapsed / 60, 3))
        if ppl < self.best:
            self.best, self.bad = ppl, 0
            if self.rank.main:
                self._save(self.best_path, None)
        else:
            self.bad += 1
        lr = self.opt.param_groups[0]["lr"]
        if self.sched is not None:
            self.sched.step(ppl)
        # the learning rate the next updates use
        self.history.setdefault("lr", []).append(self.opt.param_groups[0]["lr"])
        if not self.rank.main:
            return ppl
        plot_curves(self.history, os.path.join(self.out, "curves.png"), title=self.title,
                    baseline=self.unigram, baseline_label=self.baseline_name)
        log.info("update %d: validation perplexity %.2f (best %.2f, %s %.1f)",
                 self.updates, ppl, self.best, self.baseline_name, self.unigram)
        if self.history["lr"][-1] != lr:
            log.info("learning rate %.3g -> %.3g after %d validations without improvement",
                     lr, self.history["lr"][-1], self.cfg.lr_patience)
        return ppl

    def _agreed(self, flag: bool) -> bool:
        """Rank 0's answer, on every rank (the ranks' clocks differ)."""
        if self.rank.world == 1:
            return flag
        t = torch.tensor([float(flag)], device=self.device if dist.get_backend() == "nccl" else "cpu")
        dist.broadcast(t, src=0)
        return bool(t.item())

    # -- the loop ---------------------------------------------------------------------------
    def train(self) -> dict:
        cfg = self.cfg
        self.unigram, self.baseline_name = self._baseline()
        n_params = sum(p.numel() for p in self.model.parameters())
        log.info("model %s: %.1fM parameters on %s%s; %s; %s baseline perplexity %.1f", self.model.cfg.to_dict(),
                 n_params / 1e6, self.device,
                 f" and {self.rank.world - 1} more processes, each a share of every minibatch"
                 if self.rank.world > 1 else "", self._describe(), self.baseline_name, self.unigram)
        if self.rank.main:
            with atomic_write(os.path.join(self.out, "config.json"), "w") as f:
                json.dump({"model": self.model.cfg.to_dict(), "train": asdict(cfg), "data": self.meta}, f,
                          indent=1)

        self.model.train()
        start = time.monotonic()
        elapsed0 = self.elapsed
        last_ckpt = start
        run_nll, run_tok, run_pairs, t_run = 0.0, 0, 0, time.monotonic()
        stop_reason = None
        # a resumed run whose budget is already used takes no further step
        if cfg.max_updates is not None and self.updates >= cfg.max_updates:
            stop_reason = f"{cfg.max_updates} updates done"
        if cfg.max_minutes is not None and self.elapsed >= cfg.max_minutes * 60:
            stop_reason = stop_reason or f"time budget of {cfg.max_minutes:g} min used"
        bar = tqdm(total=cfg.max_updates, initial=self.updates, desc="training", unit=" upd",
                   disable=not self.progress, mininterval=1.0, dynamic_ncols=True)
        if not self.history["valid"]:
            self.validate()
        while stop_reason is None:
            if cfg.max_epochs is not None and self.epoch >= cfg.max_epochs:
                stop_reason = f"{cfg.max_epochs} epoch(s) done"
                break
            it = self._epoch_batches(self.epoch)
            for _ in range(self.batch_in_epoch):  # skip what a resumed run has already seen
                next(it)
            for batch in it:
                candidates = self._candidates(batch)
                with row_buckets.autocast(self.device, cfg.precision == "bf16"):
                    if self.rank.world > 1:
                        # -sum / B over this rank's items, times the number of ranks: DDP's average of
                        # the ranks' gradients is then the gradient of the whole minibatch's mean loss
                        batch, size = self._share(batch, self.rank.rank, self.rank.world)
                        logp, n_tok = self._batch_logp(batch, candidates)
                        loss = -logp.float().sum() * (self.rank.world / size)
                    else:
                        logp, n_tok = self._batch_logp(batch, candidates)
                        loss = -logp.float().mean()
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip)
                self.opt.step()
                self.updates += 1
                self.batch_in_epoch += 1
                run_nll -= logp.detach().double().sum().item()
                run_tok += n_tok
                run_pairs += len(logp)
                bar.update(1)
                now = time.monotonic()
                self.elapsed = elapsed0 + (now - start)
                if self.updates % 50 == 0:
                    ppl = math.exp(run_nll / run_tok)
                    self.history["train"].append((self.updates, ppl))
                    bar.set_postfix(ep=self.epoch, ppl=f"{ppl:.1f}", pairs_s=f"{run_pairs / (now - t_run):.0f}",
                                    val=f"{self.best:.1f}")
                    run_nll, run_tok, run_pairs, t_run = 0.0, 0, 0, now
                if cfg.valid_every > 0 and self.updates % cfg.valid_every == 0:
                    self.validate()
                    if self.bad >= cfg.patience:
                        stop_reason = f"no improvement in {cfg.patience} validations (early stop)"
                if cfg.max_updates is not None and self.updates >= cfg.max_updates:
                    stop_reason = stop_reason or f"{cfg.max_updates} updates done"
                if cfg.max_minutes is not None and self._agreed(self.elapsed >= cfg.max_minutes * 60):
                    stop_reason = stop_reason or f"time budget of {cfg.max_minutes:g} min used"
                if self.rank.main and now - last_ckpt >= cfg.checkpoint_minutes * 60:
                    self.save_last()
                    last_ckpt = now
                if stop_reason:
                    break
            else:
                self.epoch += 1
                self.batch_in_epoch = 0
                log.info("epoch %d done at update %d", self.epoch, self.updates)
                if cfg.valid_every == 0:  # validate once per epoch (the paper's CSLM: 10 epochs' patience)
                    self.validate()
                    if self.bad >= cfg.patience:
                        stop_reason = f"no improvement in {cfg.patience} epochs (early stop)"
        bar.close()
        if not self.history["valid"] or self.history["valid"][-1][0] != self.updates:
            self.validate()
        if not self.rank.main:
            return {"stop": stop_reason, "updates": self.updates}
        self.save_last()
        summary = {"stop": stop_reason, "updates": self.updates, "epoch": self.epoch,
                   "batch_in_epoch": self.batch_in_epoch,
                   "minutes": self.elapsed / 60, "best_valid_ppl": self.best, "baseline": self.baseline_name,
                   "baseline_ppl": self.unigram,
                   "last_valid_ppl": self.history["valid"][-1][1]}
        with atomic_write(os.path.join(self.out, "summary.json"), "w") as f:
            json.dump(summary, f, indent=1)
        log.info("stopped: %s; best validation perplexity %.2f vs %s %.1f; %s",
                 stop_reason, self.best, self.baseline_name, self.unigram, self.best_path)
        return summary


class Trainer(BaseTrainer):
    """The RNN Encoder-Decoder on the unique pairs of a phrase table."""
    title = "RNN Encoder-Decoder training"

    def __init__(self, table: str, src_vocab: Vocabulary, tgt_vocab: Vocabulary, out_dir: str,
                 model_cfg: ModelConfig, cfg: TrainConfig, device: torch.device,
                 resume: bool = False, overwrite: bool = False, progress: bool = True):
        self.table, self.src_vocab, self.tgt_vocab, self.model_cfg = table, src_vocab, tgt_vocab, model_cfg
        super().__init__(out_dir, cfg, device, resume, overwrite, progress)

    def _new_model(self) -> torch.nn.Module:
        return RNNEncoderDecoder(self.model_cfg)

    def _softmax_words(self) -> int:
        return self.model_cfg.tgt_vocab

    def _load(self, path: str):
        ck = load_checkpoint(path, self.device)
        check_vocab_matches(path, ck["src_vocab"], self.src_vocab, "source")
        check_vocab_matches(path, ck["tgt_vocab"], self.tgt_vocab, "target")
        return ck["model"], ck["trainer"]

    def _save(self, path: str, trainer_state: dict | None) -> None:
        save_checkpoint(path, self.model, self.src_vocab, self.tgt_vocab, self.cfg.inverse, trainer_state)

    def _prepare_data(self) -> None:
        meta_path = os.path.join(self.data_dir, "meta.json")
        want = {"table": os.path.abspath(self.table), "seed": self.cfg.seed,
                "valid_fraction": self.cfg.valid_fraction, "inverse": self.cfg.inverse,
                "src_vocab": self.src_vocab.fingerprint(), "tgt_vocab": self.tgt_vocab.fingerprint(),
                "n_buckets": self.cfg.buckets, "bucket_by": self._bucket_by()}
        if os.path.exists(meta_path):
            meta = pairdata.load_meta(self.data_dir)
            meta["n_buckets"] = len(meta["bucket_sizes"])
            meta.setdefault("bucket_by", "pair")
            if all(meta.get(k) == v for k, v in want.items()):
                log.info("using the prepared pairs in %s", self.data_dir)
                self.meta = meta
                return
        self.meta = pairdata.prepare(self.table, self.src_vocab, self.tgt_vocab, self.data_dir,
                                     valid_fraction=self.cfg.valid_fraction, n_buckets=self.cfg.buckets,
                                     seed=self.cfg.seed, inverse=self.cfg.inverse, bucket_by=self._bucket_by(),
                                     progress=self.progress)
        if self.meta["train_pairs"] == 0 or self.meta["valid_pairs"] == 0:
            raise TrainError(f"{self.table}: {self.meta['train_pairs']} training and "
                             f"{self.meta['valid_pairs']} validation pairs; raise --valid-fraction "
                             "or give a larger table")

    def _baseline(self) -> tuple[float, str]:
        self.valid = pairdata.Pairs.load(os.path.join(self.data_dir, "valid.npz"))
        counts = np.load(os.path.join(self.data_dir, "tgt_unigram.npy"))
        return unigram_perplexity(counts, self.valid), "unigram"

    def _describe(self) -> str:
        return f"{self.meta['train_pairs']} training pairs, {len(self.valid)} validation pairs"

    def _bucket_by(self) -> str:
        """By-source batches need every target of a source in one bucket."""
        return "source" if self.cfg.batching == "by-source" else "pair"

    def _network(self) -> torch.nn.Module:
        return ForestModel(self.model) if self.cfg.batching == "by-source" else self.model

    def _epoch_batches(self, epoch: int):
        cfg = self.cfg
        n = len(self.meta["bucket_sizes"])
        if cfg.batching == "by-source":
            return pairdata.epoch_batches_by_source(self.data_dir, n, cfg.seed, epoch, cfg.batch_size,
                                                    cfg.per_source)
        return pairdata.epoch_batches(self.data_dir, n, cfg.seed, epoch, cfg.batch_size, cfg.group)

    def _share(self, batch, rank: int, world: int):
        srcs, tgts = batch
        if self.cfg.batching == "by-source":  # contiguous shares keep each run of a source together
            bounds = np.linspace(0, len(srcs), world + 1).round().astype(int)
            a, b = bounds[rank], bounds[rank + 1]
            return (srcs[a:b], tgts[a:b]), len(srcs)
        return (srcs[rank::world], tgts[rank::world]), len(srcs)

    def _batch_targets(self, batch):
        return np.concatenate([np.asarray(t, dtype=np.int64) for t in batch[1]])

    def _batch_logp(self, batch, candidates=None):
        srcs, tgts = batch
        if self.cfg.batching == "by-source":
            return self.net(PrefixForest.build(srcs, tgts), candidates), sum(len(t) for t in tgts)
        s, sl = pad(srcs, self.device)
        t, tl = pad(tgts, self.device)
        return self.net(s, sl, t, tl, candidates), sum(tl)

    def _evaluate(self) -> tuple[float, int]:
        return evaluate(self.model, self.valid, self.device)


class CSLMTrainer(BaseTrainer):
    """The CSLM on tokenised target text: every word of every sentence (and its </s>) is an n-gram."""
    title = "CSLM training"

    def __init__(self, text: list[str], vocab: Vocabulary, out_dir: str, model_cfg, cfg: TrainConfig,
                 device: torch.device, resume: bool = False, overwrite: bool = False, progress: bool = True):
        self.text, self.vocab, self.model_cfg = text, vocab, model_cfg
        super().__init__(out_dir, cfg, device, resume, overwrite, progress)

    def _new_model(self) -> torch.nn.Module:
        return CSLM(self.model_cfg)

    def _softmax_words(self) -> int:
        return self.model_cfg.vocab

    def _load(self, path: str):
        ck = load_cslm_checkpoint(path, self.device)
        check_vocab_matches(path, ck["vocab"], self.vocab, "target")
        return ck["model"], ck["trainer"]

    def _save(self, path: str, trainer_state: dict | None) -> None:
        save_cslm_checkpoint(path, self.model, self.vocab, self.oos_counts, trainer_state)

    def _prepare_data(self) -> None:
        meta_path = os.path.join(self.data_dir, "meta.json")
        want = {"text": [os.path.abspath(p) for p in self.text], "seed": self.cfg.seed,
                "valid_fraction": self.cfg.valid_fraction, "vocab": self.vocab.fingerprint()}
        meta = None
        if os.path.exists(meta_path):
            with open(meta_path) as f:
                meta = json.load(f)
            if all(meta.get(k) == v for k, v in want.items()):
                log.info("using the prepared n-grams in %s", self.data_dir)
            else:
                meta = None
        if meta is None:
            meta = ngrams.prepare(self.text, self.vocab, self.data_dir, self.cfg.valid_fraction, self.cfg.seed,
                                  self.progress)
        if meta["train_ngrams"] == 0 or meta["valid_ngrams"] == 0:
            raise TrainError(f"{', '.join(self.text)}: {meta['train_ngrams']} training and "
                             f"{meta['valid_ngrams']} validation n-grams; raise --valid-fraction or give more text")
        self.meta = meta
        with open(os.path.join(self.data_dir, "oos_counts.json"), encoding="utf-8") as f:
            self.oos_counts = json.load(f)
        self.train_stream = ngrams.Stream(self.data_dir, "train")
        self.valid_stream = ngrams.Stream(self.data_dir, "valid")

    def _baseline(self) -> tuple[float, str]:
        counts = np.load(os.path.join(self.data_dir, "unigram.npy"))
        p = (counts + 1.0) / (counts.sum() + len(counts))
        return float(np.exp(-np.log(p[np.asarray(self.valid_stream.ids)]).mean())), "unigram"

    def _describe(self) -> str:
        m = self.meta
        return (f"{m['train_ngrams']} training n-grams ({m['train_sentences']} sentences), "
                f"{m['valid_ngrams']} validation n-grams")

    def _epoch_batches(self, epoch: int):
        """Positions of the n-grams of each minibatch (read by ``_batch_logp``)."""
        return ngrams.epoch_positions(len(self.train_stream), self.cfg.seed, epoch, self.cfg.batch_size)

    def _share(self, batch, rank: int, world: int):
        return batch[rank::world], len(batch)

    def _batch_targets(self, batch):
        return self.train_stream.words(batch)

    def _batch_logp(self, batch, candidates=None):
        ctx, words = self.train_stream.batch(batch, self.model.cfg.order)
        return (self.net(torch.from_numpy(ctx).to(self.device), torch.from_numpy(words).to(self.device), candidates),
                len(words))

    def _evaluate(self) -> tuple[float, int]:
        order = self.model.cfg.order
        n = len(self.valid_stream)
        nll = 0.0
        for a in range(0, n, 1024):
            ctx, words = self.valid_stream.batch(np.arange(a, min(a + 1024, n)), order)
            nll -= self.model(torch.from_numpy(ctx).to(self.device),
                              torch.from_numpy(words).to(self.device)).double().sum().item()
        return nll, n
