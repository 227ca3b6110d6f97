"""The captions a captioning model must beat, scored by the same code as the model:

- `most frequent training caption`: the one caption written most often in
  the training split (as the target encodes it), given for every image;
- `nearest training image's caption`: the first caption of the training
  image closest to each image by the model's own image encoder (cosine of
  the pooled features), retrieval instead of generation.
"""

import collections

import numpy as np

from mmkeras.data.dataset import make_dataset

BATCH_SIZE = 256


def _unit(vectors):
    vectors = np.asarray(vectors, np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def evaluate_caption_baselines(task, spec, split):
    """{baseline name: caption scores} on `split`.

    Args:
        task: Captioner. Encodes images, gives the words and the scores.
        spec: Spec. The run's spec (its training split holds the captions).
        split: str. The split the model was evaluated on.
    """

    def per_image(name):
        dataset = make_dataset(spec, name, preprocessor=task.preprocessor, batch_size=BATCH_SIZE)
        features, references, _ = task.per_image(dataset, task.pooled_features)
        return _unit(features), references

    train_features, train_captions = per_image("train")
    features, references = per_image(split)
    counts = collections.Counter(tuple(caption) for captions in train_captions for caption in captions)
    most_frequent = list(counts.most_common(1)[0][0])
    nearest = np.argmax(features @ train_features.T, axis=1)
    return {
        "most frequent training caption": task.caption_scores([most_frequent] * len(references), references),
        "nearest training image's caption": task.caption_scores(
            [train_captions[i][0] for i in nearest], references
        ),
    }
