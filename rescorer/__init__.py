"""phrase-rescorer: RNN Encoder-Decoder phrase scores (Cho et al., 2014) as a Moses feature."""
__version__ = "0.1.0"

from .model import ModelConfig, RNNEncoderDecoder  # noqa: E402
from .scorer import PhraseScorer  # noqa: E402

__all__ = ["ModelConfig", "RNNEncoderDecoder", "PhraseScorer", "__version__"]
