"""Audio preprocessing: WAV bytes to a log-mel spectrogram."""

import math

import keras
import tensorflow as tf

from mmkeras.preprocessing.preprocessing_layer import PreprocessingLayer

# Added to the mel energies before the log so that silence stays finite.
LOG_OFFSET = 1e-6


@keras.saving.register_keras_serializable(package="mmkeras")
class AudioPreprocessor(PreprocessingLayer):
    """Decodes 16-bit PCM WAV bytes into a log-mel spectrogram.

    The clip is mixed to mono, cropped or zero-padded to `duration_s`, framed
    with a periodic Hann window, and its power spectrum is projected onto
    `num_mel_bins` mel bands (HTK mel scale, as `tf.signal` defines it) before
    taking the natural log. A file whose sample rate is not `sample_rate`
    fails with an error naming both rates.

    Args:
        sample_rate: int. Expected sample rate in Hz.
        duration_s: float. Clip length in seconds.
        frame_length_ms: float. Window length.
        frame_step_ms: float. Hop between windows.
        num_mel_bins: int. Number of mel bands.
        min_hz: float. Lower edge of the lowest band.
        max_hz: float or None. Upper edge of the highest band; half the
            sample rate when left out.

    Example:

    >>> audio = AudioPreprocessor(sample_rate=8000, duration_s=1.0)
    >>> audio(tf.io.read_file("0_george_0.wav")).shape
    TensorShape([98, 64])
    """

    def __init__(
        self,
        sample_rate=16000,
        duration_s=1.0,
        frame_length_ms=25.0,
        frame_step_ms=10.0,
        num_mel_bins=64,
        min_hz=20.0,
        max_hz=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.sample_rate = sample_rate
        self.duration_s = duration_s
        self.frame_length_ms = frame_length_ms
        self.frame_step_ms = frame_step_ms
        self.num_mel_bins = num_mel_bins
        self.min_hz = min_hz
        self.max_hz = sample_rate / 2 if max_hz is None else max_hz
        self.num_samples = int(round(sample_rate * duration_s))
        self.frame_length = int(round(sample_rate * frame_length_ms / 1000))
        self.frame_step = int(round(sample_rate * frame_step_ms / 1000))
        self.fft_length = 2 ** math.ceil(math.log2(self.frame_length))
        self.num_frames = 1 + (self.num_samples - self.frame_length) // self.frame_step

    def call_batched(self, inputs):
        waveforms = tf.map_fn(
            self.decode_one,
            inputs,
            fn_output_signature=tf.TensorSpec((self.num_samples,), tf.float32),
        )
        return self.log_mel(waveforms)

    def call_one(self, data):
        return self.log_mel(self.decode_one(data)[tf.newaxis])[0]

    def decode_one(self, data):
        """One WAV file as `num_samples` mono samples; empty bytes give silence."""
        return tf.cond(
            tf.strings.length(data) > 0,
            lambda: self._decode_present(data),
            lambda: tf.zeros((self.num_samples,)),
        )

    def _decode_present(self, data):
        audio, rate = tf.audio.decode_wav(data)
        check = tf.debugging.assert_equal(
            rate,
            self.sample_rate,
            message=f"WAV sample rate differs from the spec's {self.sample_rate} Hz",
        )
        with tf.control_dependencies([check]):
            mono = tf.reduce_mean(audio, axis=-1)[: self.num_samples]
        padding = self.num_samples - tf.shape(mono)[0]
        return tf.ensure_shape(tf.pad(mono, [[0, padding]]), (self.num_samples,))

    def log_mel(self, waveforms):
        """Log-mel spectrogram of float waveforms shaped `[batch, num_samples]`."""
        stft = tf.signal.stft(
            waveforms,
            frame_length=self.frame_length,
            frame_step=self.frame_step,
            fft_length=self.fft_length,
            window_fn=tf.signal.hann_window,
        )
        power = tf.square(tf.abs(stft))
        mel_weights = tf.signal.linear_to_mel_weight_matrix(
            num_mel_bins=self.num_mel_bins,
            num_spectrogram_bins=self.fft_length // 2 + 1,
            sample_rate=self.sample_rate,
            lower_edge_hertz=self.min_hz,
            upper_edge_hertz=self.max_hz,
        )
        return tf.math.log(tf.tensordot(power, mel_weights, 1) + LOG_OFFSET)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "sample_rate": self.sample_rate,
                "duration_s": self.duration_s,
                "frame_length_ms": self.frame_length_ms,
                "frame_step_ms": self.frame_step_ms,
                "num_mel_bins": self.num_mel_bins,
                "min_hz": self.min_hz,
                "max_hz": self.max_hz,
            }
        )
        return config
