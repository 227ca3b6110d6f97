"""Loads PyTorch's compiler stack before TensorFlow, where it is installed.

PyTorch's optimizers import triton through `torch._dynamo`; when that
happens after TensorFlow's libraries are loaded, the process dies with a
segmentation fault (torch 2.13 with TensorFlow 2.21). Imported first by the
benchmarks that train PyTorch models; skipped where TensorFlow is already
loaded (a script that only borrows their helpers, such as gpu.py).
"""

import sys

if "tensorflow" not in sys.modules:
    try:
        import torch._dynamo  # noqa: F401
    except ImportError:  # PyTorch comes with the [bench] extra
        pass
