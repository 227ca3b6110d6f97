"""Text preprocessing: raw strings to padded token ids."""

import keras
import numpy as np
import tensorflow as tf

from mmkeras.preprocessing.preprocessing_layer import PreprocessingLayer

# How a learned vocabulary splits text into tokens: `words` are separated by
# spaces, except that each character of a script written without spaces
# (Chinese, Japanese kana) is a word of its own; `whitespace` splits on
# spaces only; `character` takes every character.
SPLITS = ("words", "whitespace", "character")
# RE2's Unicode script classes: the op is core TensorFlow, so TF Serving runs it too.
UNSPACED_SCRIPT_CHARACTER = r"([\p{Han}\p{Hiragana}\p{Katakana}])"


def space_unspaced_scripts(texts):
    """Texts with a space on each side of every Chinese or Japanese character."""
    return tf.strings.regex_replace(texts, UNSPACED_SCRIPT_CHARACTER, r" \1 ")


def trim_padding(token_ids):
    """A batch of right-padded token ids without the columns no text in it reaches.

    The width kept is the longest text's, rounded up to a power of two (or to
    the full width): an LSTM or attention layer then works on the words, not
    on sixty positions of padding after a three-word name, and the few widths
    there can be keep Keras from tracing its step for each. Masked encoders
    give the same outputs for the trimmed batch.
    """
    width = token_ids.shape[1]
    if width is None:
        return token_ids
    positions = tf.range(1, width + 1)
    longest = tf.reduce_max(tf.where(token_ids != 0, positions, 0))
    widths = tf.constant([2**power for power in range(width.bit_length()) if 2**power < width] + [width])
    return token_ids[:, : tf.reduce_min(tf.boolean_mask(widths, widths >= longest))]


@keras.saving.register_keras_serializable(package="mmkeras")
class TextPreprocessor(PreprocessingLayer):
    """Turns raw strings into `sequence_length` token ids, 0 being padding.

    The vocabulary is either learned from the training split with `adapt`
    (a `TextVectorization` vocabulary) or comes from a KerasHub tokenizer
    loaded from a local preset folder, in which case the ids are wrapped in the
    tokenizer's start and end tokens, as the matching backbone expects.

    Args:
        sequence_length: int. Length of the output id sequence.
        max_tokens: int. Vocabulary size (including padding and OOV) when the
            vocabulary is learned.
        standardize: str or None. `TextVectorization` standardization.
        split: str. How a learned vocabulary splits text (`SPLITS`):
            "words" (the default), "whitespace" or "character". A
            tokenizer splits text its own way.
        vocabulary: list or None. A learned vocabulary without the padding
            and OOV tokens; set by `adapt` and stored in the config.
        tokenizer_preset: str or None. A local KerasHub preset folder.

    Example:

    >>> text = TextPreprocessor(sequence_length=4)
    >>> text.adapt(["a cat", "a dog"])
    >>> text("a cat").numpy()
    array([2, 3, 0, 0], dtype=int32)
    """

    def __init__(
        self,
        sequence_length=64,
        max_tokens=20000,
        standardize="lower_and_strip_punctuation",
        split="words",
        vocabulary=None,
        tokenizer_preset=None,
        **kwargs,
    ):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}.")
        super().__init__(**kwargs)
        self.sequence_length = sequence_length
        self.max_tokens = max_tokens
        self.standardize = standardize
        self.split = split
        self.vocabulary = list(vocabulary) if vocabulary is not None else None
        self.tokenizer_preset = tokenizer_preset
        if tokenizer_preset:
            import keras_hub
            from keras.src.saving.serialization_lib import SafeModeScope

            # Loading a saved preprocessor runs in Keras's safe mode, which refuses
            # vocabulary files outside a .keras archive. This folder is the one the
            # spec names, and a vocabulary is data, not code: allow it here only.
            with SafeModeScope(False):
                self.tokenizer = keras_hub.models.Tokenizer.from_preset(
                    tokenizer_preset, _allow_python_workflow=False
                )
            self.packer = keras_hub.layers.StartEndPacker(
                sequence_length=sequence_length,
                start_value=self.tokenizer.start_token_id,
                end_value=self.tokenizer.end_token_id,
                pad_value=self.tokenizer.pad_token_id,
                return_padding_mask=False,
            )
        else:
            self.vectorizer = keras.layers.TextVectorization(
                max_tokens=max_tokens,
                standardize=standardize,
                split="character" if split == "character" else "whitespace",
                output_sequence_length=sequence_length,
                vocabulary=self.vocabulary,
            )

    @property
    def vocabulary_size(self):
        if self.tokenizer_preset:
            return self.tokenizer.vocabulary_size()
        return self.vectorizer.vocabulary_size()

    def tokens(self, ids):
        """The token each id stands for (padding is ""), as the model reads the text."""
        if self.tokenizer_preset:
            pad = self.tokenizer.pad_token_id
            return [self.tokenizer.id_to_token(int(i)) if i != pad else "" for i in ids]
        vocabulary = ["", "[UNK]", *(self.vocabulary or [])]
        return [vocabulary[int(i)] for i in ids]

    def adapt(self, texts):
        """Learns the vocabulary from an iterable of strings or a string dataset."""
        if self.tokenizer_preset:
            return
        if self.split == "words":
            texts = (
                texts.map(space_unspaced_scripts)
                if isinstance(texts, tf.data.Dataset)
                else space_unspaced_scripts(tf.constant(list(texts), tf.string))
            )
        self.vectorizer.adapt(texts)
        self.vocabulary = [
            str(token) for token in self.vectorizer.get_vocabulary(include_special_tokens=False)
        ]

    def token_counts(self, texts):
        """Each text's tokens as the tokenizer or a learned vocabulary splits
        it, before the cut at `sequence_length` (a word outside the
        vocabulary counts too; a tokenizer's start and end tokens do not)."""
        if self.tokenizer_preset:
            tokens = self.tokenizer(tf.constant(list(texts), tf.string))
            if isinstance(tokens, tf.RaggedTensor):
                return tokens.row_lengths().numpy()
            return np.array([len(ids) for ids in tokens])  # KerasHub's eager Python path: lists
        counter = keras.layers.TextVectorization(
            standardize=self.standardize,
            split="character" if self.split == "character" else "whitespace",
            vocabulary=self.vocabulary or ["[none]"],
        )
        texts = tf.constant(list(texts), tf.string)
        if self.split == "words":
            texts = space_unspaced_scripts(texts)
        return tf.reduce_sum(tf.cast(counter(texts) != 0, tf.int32), axis=1).numpy()

    def call_batched(self, inputs):
        if self.tokenizer_preset:
            return tf.cast(self.packer(self.tokenizer(inputs)), tf.int32)
        if self.split == "words":
            inputs = space_unspaced_scripts(inputs)
        return tf.cast(self.vectorizer(inputs), tf.int32)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "sequence_length": self.sequence_length,
                "max_tokens": self.max_tokens,
                "standardize": self.standardize,
                "split": self.split,
                "vocabulary": self.vocabulary,
                "tokenizer_preset": self.tokenizer_preset,
            }
        )
        return config
