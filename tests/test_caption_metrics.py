"""BLEU and CIDEr-D agree with the COCO caption evaluation's own code on real captions."""

import collections
import random

import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider

from mmkeras.datasets.flickr8k import load_flickr8k
from mmkeras.reporting.caption_metrics import cider_d, corpus_bleu


def _tokens(caption, language):
    # English words as written (the captions put spaces around punctuation);
    # Chinese one character a token.
    return caption.lower().split() if language == "en" else [c for c in caption if not c.isspace()]


@pytest.fixture(scope="module", params=["en", "zh"])
def captions(request, data_root):
    """60 photographs' reference token lists, and hypotheses of every kind a
    model gives: another photograph's caption, a reference cut short, one
    word repeated, one token, nothing (the end token first), and a
    reference itself."""
    language = request.param
    by_image = collections.defaultdict(list)
    for row in load_flickr8k(data_root, language):
        by_image[row["image"]].append(_tokens(row["caption"], language))
    images = sorted(by_image)[:60]
    references = [by_image[image][1:] for image in images]
    rng = random.Random(0)
    kinds = [
        lambda i, held_out: by_image[images[(i + 7) % len(images)]][0],
        lambda i, held_out: held_out[: max(1, len(held_out) // 2)],
        lambda i, held_out: [rng.choice(held_out)] * 6,
        lambda i, held_out: held_out[:1],
        lambda i, held_out: [],
        lambda i, held_out: references[i][0],
    ]
    hypotheses = [kinds[i % len(kinds)](i, by_image[image][0]) for i, image in enumerate(images)]
    return hypotheses, references


def _coco_inputs(hypotheses, references):
    """The package's input: {image id: [space-joined caption(s)]}."""
    res = {i: [" ".join(h)] for i, h in enumerate(hypotheses)}
    gts = {i: [" ".join(r) for r in refs] for i, refs in enumerate(references)}
    return gts, res


def test_corpus_bleu_matches_the_coco_evaluation(captions):
    hypotheses, references = captions
    gts, res = _coco_inputs(hypotheses, references)
    expected, _ = Bleu(4).compute_score(gts, res, verbose=0)
    scores = corpus_bleu(hypotheses, references)
    assert scores == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert 0 < scores[3] < scores[2] < scores[1] < scores[0] < 1


def test_cider_d_matches_the_coco_evaluation_per_image_and_overall(captions):
    hypotheses, references = captions
    gts, res = _coco_inputs(hypotheses, references)
    expected, expected_per_image = Cider().compute_score(gts, res)
    score, per_image = cider_d(hypotheses, references)
    assert score == pytest.approx(expected, rel=1e-9)
    assert per_image == pytest.approx(list(expected_per_image), rel=1e-9, abs=1e-12)
    # A reference given back as the hypothesis scores far above another photograph's caption.
    assert min(per_image[5::6]) > max(per_image[0::6])


def test_a_perfect_caption_scores_bleu_one_and_bad_input_is_named():
    references = [[["a", "dog", "runs", "on", "the", "grass"]], [["two", "children", "play", "in", "snow"]]]
    assert corpus_bleu([refs[0] for refs in references], references) == pytest.approx([1.0] * 4)
    with pytest.raises(ValueError, match="2 hypotheses for 1 reference sets"):
        corpus_bleu([["a"], ["b"]], references[:1])
    with pytest.raises(ValueError, match=r"images without a reference caption: \[1\]"):
        cider_d([["a"], ["b"]], [references[0], []])
