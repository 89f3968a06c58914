"""The settings of the networks and of their training, as dataclasses without torch: the
commands read their options' defaults from here (so each default is written once) and parse
their command lines before torch is loaded."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from .runtime import BATCHINGS, TRAIN_PRECISIONS

GATES = ("reset-before", "reset-after")
CELLS = ("gru", "lstm", "tanh")
# the blocks of each cell's input and recurrent matrices: gates and candidate (rescorer.model's units)
BLOCKS = {"gru": 3, "lstm": 4, "tanh": 1}


@dataclass
class ModelConfig:
    src_vocab: int
    tgt_vocab: int
    hidden: int = 1000        # units in encoder and decoder
    rank: int = 100           # low-rank factor of the input and output word matrices (= embedding size)
    maxout_units: int = 500   # s has this many units ...
    maxout_pool: int = 2      # ... each the max of this many pieces of s'
    gate: str = "reset-before"
    cell: str = "gru"         # the paper's gated unit; lstm and tanh for the ablation

    def __post_init__(self) -> None:
        if self.gate not in GATES:
            raise ValueError(f"gate must be one of {GATES}, not {self.gate!r}")
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {CELLS}, not {self.cell!r}")
        if self.cell != "gru" and self.gate != "reset-before":
            raise ValueError(f"gate {self.gate!r} is a form of the gated unit; the {self.cell} cell has no reset gate")
        for k in ("src_vocab", "tgt_vocab", "hidden", "rank", "maxout_units", "maxout_pool"):
            if getattr(self, k) < 1:
                raise ValueError(f"{k} must be positive")

    def to_dict(self) -> dict:
        return asdict(self)


def flops_per_token(cfg: ModelConfig) -> dict[str, int]:
    """Multiply-adds x2 of the big matrix products, for throughput reports: per encoder step, per
    source phrase (what depends on c alone) and per decoder step."""
    H, E, M, P, V = cfg.hidden, cfg.rank, cfg.maxout_units, cfg.maxout_pool, cfg.tgt_vocab
    k = BLOCKS[cfg.cell]
    return {
        "encoder_step": 2 * (k * H * E + k * H * H),
        "source_constants": 2 * (H * H + H * H + k * H * H + H * M * P),
        "decoder_step": 2 * (k * H * E + k * H * H + H * M * P + E * M * P + M * E + E * V),
    }


@dataclass
class CSLMConfig:
    vocab: int                      # shortlist size, </s> and [UNK] included
    order: int = 7                  # n: n-1 context words
    embed: int = 512                # dimension of R w
    hidden: tuple[int, ...] = (1536, 1024)
    init: float = 0.01              # uniform [-init, init]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "CSLMConfig":
        d = dict(d)
        d["hidden"] = tuple(d["hidden"])
        return cls(**d)


@dataclass
class TrainConfig:
    batch_size: int = 64
    group: int = 10                 # batches read at once and sorted by length
    optimizer: str = "adadelta"     # the paper's; "adam" converges faster on small budgets
    lr: float | None = None         # default: 1.0 for Adadelta, 1e-3 for Adam
    rho: float = 0.95               # Adadelta
    eps: float = 1e-6
    clip: float = 1.0               # gradient-norm clipping
    valid_every: int = 1000         # updates between validations; 0: at the end of every epoch
    patience: int = 10              # validations without improvement before stopping
    lr_decay: float = 1.0           # learning rate times this on a plateau (ReduceLROnPlateau); 1: never
    lr_patience: int = 2            # validations without improvement before each decay
    checkpoint_minutes: float = 10.0
    max_minutes: float | None = None
    max_epochs: int | None = None
    max_updates: int | None = None
    valid_fraction: float = 0.001
    buckets: int = 16
    seed: int = 1234
    inverse: bool = False
    batching: str = "uniform"       # "uniform": length-sorted groups of uniformly drawn pairs (GroundHog's);
                                    # "by-source": runs of targets of one source, scored as prefix trees
    per_source: int = 16            # by-source: at most this many targets of one source in a run
    precision: str = "fp32"         # "bf16": matrix products in bfloat16 (autocast), fp32 master weights
    sampled_softmax: int = 0        # K > 0: training's softmax over the minibatch's target words and K
                                    # words drawn uniformly from the shortlist (Jean et al., 2015)

    def check(self, softmax_words: int | None = None) -> None:
        """Refuse values no run can use, naming the option, before any data is read
        (``softmax_words``: the network's output shortlist, once known)."""
        for key in ("batch_size", "group", "per_source", "buckets"):
            if getattr(self, key) < 1:
                raise TrainError(f"--{key.replace('_', '-')} {getattr(self, key)}: must be at least 1")
        if self.batching not in BATCHINGS:
            raise TrainError(f"--batching {self.batching!r}: one of {', '.join(BATCHINGS)}")
        if self.precision not in TRAIN_PRECISIONS:
            raise TrainError(f"--precision {self.precision!r}: one of {', '.join(TRAIN_PRECISIONS)}")
        if self.sampled_softmax < 0:
            raise TrainError(f"--sampled-softmax {self.sampled_softmax}: a number of words, 0 for the full softmax")
        if softmax_words is not None and self.sampled_softmax >= softmax_words:
            raise TrainError(f"--sampled-softmax {self.sampled_softmax}: not fewer than the {softmax_words} words of "
                             "the shortlist it samples from (0: the full softmax)")
        if not 0 < self.valid_fraction < 1:
            raise TrainError(f"--valid-fraction {self.valid_fraction}: a share between 0 and 1")


# what decides the order of the minibatches: a resumed run keeps its own
DATA_SETTINGS = ("seed", "batch_size", "group", "valid_fraction", "buckets", "batching", "per_source")


class TrainError(RuntimeError):
    pass
