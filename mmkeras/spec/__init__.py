"""The spec: what the user writes once to describe their data.

A spec names the features (which column holds text, an image path or an audio
path, or record values), the target, and how to read the data. Everything else in mmkeras (the
preprocessor, the tf.data pipeline, the model) is derived from it.

Example:

```python
spec = mmkeras.Spec.from_yaml("spec.yaml")
spec.data.features[0].modality  # "text"
```
"""

from mmkeras.spec.data import (
    MODALITIES,
    TARGET_TYPES,
    AudioFeature,
    DataSpec,
    ImageAugmentation,
    ImageFeature,
    RecordColumn,
    RecordFeature,
    TargetSpec,
    TextFeature,
)
from mmkeras.spec.model import BalanceSpec, GenerationSpec, ModelSpec
from mmkeras.spec.spec import Spec
from mmkeras.spec.train import TrainSpec
