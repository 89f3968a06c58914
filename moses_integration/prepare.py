"""Corpus preparation as Moses's scripts do it, with sacremoses.

* ``Preprocessor``: ``normalize-punctuation.perl -l L | tokenizer.perl -l L`` (aggressive
  hyphen splitting off, Moses's escaping: ``|`` -> ``&#124;``, ``'`` -> ``&apos;`` ...), then
  ``truecase.perl`` with a model trained by ``train-truecaser.perl`` (sacremoses's truecaser;
  it reads and writes Moses's model format; ``use_known`` as truecase.perl: a word seen in
  training keeps its case except at the start of a sentence).
* ``clean_pair``: ``clean-corpus-n.perl CORPUS L1 L2 OUT 1 80``: both sides 1 to 80 words and
  neither more than 9 times longer than the other.
The way back before BLEU (``detruecase.perl | detokenizer.perl``) is ``evaluate.postprocess``.
"""
from __future__ import annotations

# sacremoses is imported where it is used, so that a process that imports this module without
# preparing text (an experiment's every stage is a process) does not load it


class Preprocessor:
    """Normalise, tokenise and (with a truecasing model) truecase one language's lines."""

    def __init__(self, lang: str, truecase_model: str | None = None):
        from sacremoses import MosesPunctNormalizer, MosesTokenizer, MosesTruecaser
        self.lang = lang
        self.normalizer = MosesPunctNormalizer(lang=lang)
        self.tokenizer = MosesTokenizer(lang=lang)
        self.truecaser = MosesTruecaser(load_from=truecase_model) if truecase_model else None

    def tokenize(self, line: str) -> str:
        return self.tokenizer.tokenize(self.normalizer.normalize(line.strip()), aggressive_dash_splits=False,
                                       escape=True, return_str=True)

    def __call__(self, line: str) -> str:
        tok = self.tokenize(line)
        return self.truecaser.truecase(tok, return_str=True, use_known=True) if self.truecaser else tok


def train_truecaser(tokenised_lines, model_path: str):
    """``train-truecaser.perl``: the most frequent casing of each word, sentence-initial words
    not counted; the model is written in Moses's format (sacremoses's ``MosesTruecaser``)."""
    from sacremoses import MosesTruecaser
    tc = MosesTruecaser()
    tc.train([line.split() for line in tokenised_lines], save_to=model_path)
    return tc


def clean_pair(src: str, tgt: str, min_len: int = 1, max_len: int = 80, ratio: float = 9.0) -> bool:
    """Whether ``clean-corpus-n.perl ... min max`` keeps a tokenised pair."""
    ns, nt = len(src.split()), len(tgt.split())
    if not (min_len <= ns <= max_len and min_len <= nt <= max_len):
        return False
    return ns / nt <= ratio and nt / ns <= ratio
