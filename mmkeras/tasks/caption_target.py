"""A caption as a target: token ids between a start and an end token, and back."""

import keras
import numpy as np
import tensorflow as tf

from mmkeras.errors import SpecError
from mmkeras.preprocessing.preprocessing_layer import PreprocessingLayer
from mmkeras.preprocessing.text import TextPreprocessor

PAD_ID = 0
# The scripts written without spaces, with their punctuation (CJK symbols such
# as 。 and the full-width forms such as ，): their tokens are joined without one.
_UNSPACED = r"[\p{Han}\p{Hiragana}\p{Katakana}\x{3000}-\x{303F}\x{FF00}-\x{FFEF}]"
_UNSPACED_PAIR = f"({_UNSPACED}) ({_UNSPACED})"


def _close_unspaced(text):
    """Space-joined tokens with the spaces between unspaced scripts' characters removed."""
    for _ in range(2):  # two passes join every pair: "a b c" -> "ab c" -> "abc"
        text = tf.strings.regex_replace(text, _UNSPACED_PAIR, r"\1\2")
    return text


@keras.saving.register_keras_serializable(package="mmkeras")
class CaptionTarget(PreprocessingLayer):
    """Encodes a caption as `max_length + 2` token ids: the start token, the
    caption's first `max_length` tokens, the end token, then padding (0).

    The vocabulary is learned from the training captions (`adapt`), and the
    start and end tokens take the two ids after it; or it is a KerasHub
    tokenizer's, with that tokenizer's start and end tokens. In training the
    model reads the ids but the last and predicts each next one
    (`teacher_forced`, which the input pipeline applies).

    Args:
        max_length: int. Caption tokens kept.
        max_tokens: int. Learned vocabulary size, padding and OOV included.
        split: str. How captions split into tokens (`TextPreprocessor`'s).
        standardize: str or None. `TextVectorization` standardization.
        vocabulary: list or None. The learned vocabulary; set by `adapt`.
        tokenizer_preset: str or None. A local KerasHub preset folder whose
            tokenizer replaces the learned vocabulary; its padding id must be 0.
    """

    # The model input that carries the caption so far.
    previous_tokens = "previous_tokens"

    def __init__(
        self,
        max_length=20,
        max_tokens=5000,
        split="words",
        standardize="lower_and_strip_punctuation",
        vocabulary=None,
        tokenizer_preset=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.max_length = max_length
        self.max_tokens = max_tokens
        self.split = split
        self.standardize = standardize
        self.tokenizer_preset = tokenizer_preset
        self.text = TextPreprocessor(
            # A tokenizer's packer adds the start and end tokens itself.
            sequence_length=max_length + 2 if tokenizer_preset else max_length,
            max_tokens=max_tokens,
            standardize=standardize,
            split=split,
            vocabulary=vocabulary,
            tokenizer_preset=tokenizer_preset,
            name="caption_tokens",
        )
        self.tokenizer = self.text.tokenizer if tokenizer_preset else None
        if self.tokenizer is not None and self.tokenizer.pad_token_id != PAD_ID:
            raise SpecError(
                f"data.target.sequence.tokenizer: {tokenizer_preset} pads with id "
                f"{self.tokenizer.pad_token_id}; a caption target needs padding id {PAD_ID} "
                "(BERT-family tokenizers use it), or leave `tokenizer` out to learn a vocabulary."
            )

    @property
    def vocabulary(self):
        return self.text.vocabulary

    @property
    def start_id(self):
        if self.tokenizer is not None:
            return self.tokenizer.start_token_id
        # After padding (0), the out-of-vocabulary id (1) and the learned words.
        return 2 + len(self.vocabulary or [])

    @property
    def end_id(self):
        if self.tokenizer is not None:
            return self.tokenizer.end_token_id
        return self.start_id + 1

    @property
    def vocabulary_size(self):
        """Every id a model predicts: padding, OOV, the words, start and end."""
        if self.tokenizer is not None:
            return self.tokenizer.vocabulary_size()
        return self.start_id + 2

    def adapt(self, captions):
        self.text.adapt([str(caption) for caption in captions])

    def problem(self, value):
        """Why a raw caption cannot be a target, or None when it can."""
        if not str(value).strip():
            return "the caption is empty"
        return None

    def cut_count(self, captions):
        """How many of `captions` are longer than `max_length` tokens."""
        captions = [str(caption) for caption in captions]
        return int((self.text.token_counts(captions) > self.max_length).sum()) if captions else 0

    def teacher_forced(self, inputs, encoded):
        """(inputs with the caption so far, the next token at each position)."""
        return {**inputs, self.previous_tokens: encoded[..., :-1]}, encoded[..., 1:]

    def call_batched(self, captions):
        if self.tokenizer is not None:
            return self.text(captions)
        ids = self.text(captions)
        batch = tf.shape(ids)[0]
        lengths = tf.reduce_sum(tf.cast(ids != PAD_ID, tf.int32), axis=1)
        padded = tf.concat([tf.fill([batch, 1], self.start_id), ids, tf.zeros([batch, 1], tf.int32)], axis=1)
        ends = tf.range(self.max_length + 2)[tf.newaxis, :] == lengths[:, tf.newaxis] + 1
        return tf.where(ends, self.end_id, padded)

    def to_text(self, ids):
        """Generated ids (a batch, start token excluded) to caption strings:
        the tokens before the first end token, joined by spaces except
        between characters of scripts written without them."""
        ids = tf.convert_to_tensor(ids)
        before_end = tf.cumsum(tf.cast(ids == self.end_id, tf.int32), axis=1, exclusive=False) == 0
        kept = tf.ragged.boolean_mask(ids, before_end & (ids != PAD_ID))
        if self.tokenizer is not None:
            return _close_unspaced(self.tokenizer.detokenize(kept))
        tokens = tf.constant(["", "[UNK]", *(self.vocabulary or []), "", ""])
        return _close_unspaced(tf.strings.reduce_join(tf.gather(tokens, kept), axis=1, separator=" "))

    def words(self, ids, unknown="[UNK]"):
        """Token ids (after the start token) to the caption's words, up to the
        end token, as the metrics count them; `unknown` stands for the
        out-of-vocabulary token."""
        ids = np.asarray(ids)
        ends = np.flatnonzero(ids == self.end_id)
        ids = ids[: ends[0] if len(ends) else len(ids)]
        ids = ids[ids != PAD_ID]
        if self.tokenizer is not None:
            # Subword pieces joined back into words; a character of an
            # unspaced script is a word of its own, as with `split: words`.
            text = self.tokenizer.detokenize([ids.tolist()])[0]
            text = text.numpy().decode("utf-8") if hasattr(text, "numpy") else text  # TF or Python path
            out_of_vocabulary = getattr(self.tokenizer, "oov_token", None)  # WordPiece's; BPE has none
            return [unknown if w == out_of_vocabulary else w for w in text.split()]
        vocabulary = ["", unknown, *(self.vocabulary or [])]
        return [vocabulary[token] for token in ids if token < len(vocabulary)]

    def join(self, words):
        """A caption's words (a list of str) as `to_text` writes them."""
        return _close_unspaced(tf.constant(" ".join(words))).numpy().decode("utf-8")

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "max_length": self.max_length,
                "max_tokens": self.max_tokens,
                "split": self.split,
                "standardize": self.standardize,
                "vocabulary": self.vocabulary,
                "tokenizer_preset": self.tokenizer_preset,
            }
        )
        return config
