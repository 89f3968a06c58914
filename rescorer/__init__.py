"""phrase-rescorer: RNN Encoder-Decoder phrase scores (Cho et al., 2014) as a Moses feature."""
__version__ = "0.1.0"

__all__ = ["ModelConfig", "RNNEncoderDecoder", "PhraseScorer", "__version__"]

_LAZY = {"ModelConfig": "model", "RNNEncoderDecoder": "model", "PhraseScorer": "scorer"}


def __getattr__(name: str):
    """The model classes, imported on first use: the package's file-format modules (vocab,
    phrase_table, fileio), which the decoder uses, do not need torch."""
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
