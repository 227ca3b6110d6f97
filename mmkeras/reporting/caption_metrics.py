"""Caption metrics as the COCO caption evaluation (`pycocoevalcap`) computes
them: corpus BLEU-1..4 and CIDEr-D.

Both take captions already split into tokens: one hypothesis per image and
that image's references (at least one). Scores match the reference code's
for the same tokens, its quirks included, so they compare with published
figures; what differs between papers is mostly the tokenisation.
"""

import collections
import math

import numpy as np

# The reference code's guards against a zero count: a precision with no
# n-gram right is 1e-15 / (guessed + 1e-9), not a division by zero.
_TINY, _SMALL = 1e-15, 1e-9


def ngram_counts(tokens, max_n=4):
    """{n-gram tuple: count} for n = 1..max_n."""
    counts = collections.Counter()
    for n in range(1, max_n + 1):
        for start in range(len(tokens) - n + 1):
            counts[tuple(tokens[start : start + n])] += 1
    return counts


def _check(hypotheses, references):
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} reference sets")
    if not hypotheses:
        raise ValueError("no captions to score")
    empty = [i for i, refs in enumerate(references) if not refs]
    if empty:
        raise ValueError(f"images without a reference caption: {empty[:5]}")


def corpus_bleu(hypotheses, references, max_n=4):
    """[BLEU-1, ..., BLEU-max_n] over the corpus.

    Clipped n-gram counts are summed over all images before the precisions
    are taken; the brevity penalty compares the total hypothesis length
    with, per image, the reference length closest to its hypothesis's (the
    shorter one on a tie).

    Args:
        hypotheses: list of token lists, one per image.
        references: list of lists of token lists, the references per image.
    """
    _check(hypotheses, references)
    correct, guessed = np.zeros(max_n), np.zeros(max_n)
    hypothesis_length = reference_length = 0
    for hypothesis, refs in zip(hypotheses, references):
        clip = collections.Counter()
        for ref in refs:
            clip |= ngram_counts(ref, max_n)  # the most any one reference has
        for ngram, count in ngram_counts(hypothesis, max_n).items():
            correct[len(ngram) - 1] += min(count, clip[ngram])
        guessed += [max(0, len(hypothesis) - k) for k in range(max_n)]
        hypothesis_length += len(hypothesis)
        reference_length += min((abs(len(ref) - len(hypothesis)), len(ref)) for ref in refs)[1]
    precisions = (correct + _TINY) / (guessed + _SMALL)
    scores = [float(np.prod(precisions[:n]) ** (1 / n)) for n in range(1, max_n + 1)]
    ratio = (hypothesis_length + _TINY) / (reference_length + _SMALL)
    penalty = math.exp(1 - 1 / ratio) if ratio < 1 else 1.0
    return [score * penalty for score in scores]


def cider_d(hypotheses, references, max_n=4, sigma=6.0):
    """CIDEr-D: (the corpus score, the score per image).

    Each n-gram is weighted by its count times its inverse document
    frequency over the images' reference sets; per n, the hypothesis's
    vector is compared with each reference's by a cosine whose hypothesis
    counts are clipped at the reference's, times a Gaussian penalty on the
    length difference; the mean over n and references, times 10.
    """
    _check(hypotheses, references)
    reference_counts = [[(ngram_counts(ref, max_n), len(ref)) for ref in refs] for refs in references]
    document_frequency = collections.Counter()
    for refs in reference_counts:
        document_frequency.update(set().union(*(counts for counts, _ in refs)))  # once per image
    log_images = math.log(len(references))

    def weighted(counts):
        vectors, norms = [{} for _ in range(max_n)], np.zeros(max_n)
        for ngram, count in counts.items():
            weight = count * (log_images - math.log(max(1.0, document_frequency[ngram])))
            vectors[len(ngram) - 1][ngram] = weight
            norms[len(ngram) - 1] += weight**2
        return vectors, np.sqrt(norms)

    scores = []
    for hypothesis, refs in zip(hypotheses, reference_counts):
        vectors, norms = weighted(ngram_counts(hypothesis, max_n))
        total = np.zeros(max_n)
        for ref, ref_length in refs:
            ref_vectors, ref_norms = weighted(ref)
            penalty = math.exp(-((len(hypothesis) - ref_length) ** 2) / (2 * sigma**2))
            for n in range(max_n):
                value = sum(
                    min(weight, ref_vectors[n].get(ngram, 0.0)) * ref_vectors[n].get(ngram, 0.0)
                    for ngram, weight in vectors[n].items()
                )
                if norms[n] and ref_norms[n]:
                    value /= norms[n] * ref_norms[n]
                total[n] += value * penalty
        scores.append(10.0 * float(total.mean()) / len(refs))
    return float(np.mean(scores)), scores
