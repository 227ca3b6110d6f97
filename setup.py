"""Install mmkeras: `pip install -e .` (add `[test]`, `[notebooks]` or `[bench]`)."""

import re

from setuptools import find_packages, setup

with open("mmkeras/__init__.py", encoding="utf-8") as f:
    VERSION = re.search(r'__version__ = "([^"]+)"', f.read()).group(1)

with open("README.md", encoding="utf-8") as f:
    LONG_DESCRIPTION = f.read()

# Pinned to the minor versions the test suite runs against.
INSTALL_REQUIRES = [
    "tensorflow>=2.21,<2.22",
    "tensorflow-text>=2.21,<2.22",
    "keras>=3.15,<3.16",
    "keras-hub>=0.32,<0.33",
    "tensorboard>=2.21,<2.22",
    "tensorflow-serving-api>=2.21,<2.22",
    "grpcio>=1.60",
    "keras-tuner[bayesian]>=1.4,<1.5",  # Bayesian optimisation needs scikit-learn and scipy
    "matplotlib>=3.8",
    "numpy>=1.26",
    "pillow>=10",
    "pyyaml>=6",
    "safetensors>=0.4",
    "tqdm>=4.60",
]

EXTRAS = {
    # The tests run the notebooks too.
    "test": [
        # pytest 9.2 ignores the group xdist 3.8 gives a test (pytest-xdist#1386).
        "pytest>=8,<9.2",
        "pytest-timeout>=2.3",
        "pytest-xdist>=3.8",  # --dist loadgroup --no-loadscope-reorder
        "nbclient>=0.10",
        "nbformat>=5.9",
        "ipykernel>=6",
        "ipywidgets>=8",
        # The COCO caption evaluation: the caption metrics are checked against it.
        "pycocoevalcap>=1.2",
        # easy-VQA's pictures and questions ship inside the package (MIT).
        "easy-vqa>=1.0",
        # Lint and format, run by the README test command before the tests.
        "ruff>=0.17,<0.18",
    ],
    "notebooks": ["jupyter", "nbclient>=0.10", "ipykernel", "ipywidgets>=8"],
    # The alternatives the benchmarks compare against.
    "bench": ["torch==2.13.0", "librosa>=0.10", "soundfile>=0.12"],
}

setup(
    name="mmkeras",
    version=VERSION,
    description=(
        "Multimodal deep learning with Keras and TensorFlow: text, image and audio in, TF Serving out."
    ),
    long_description=LONG_DESCRIPTION,
    long_description_content_type="text/markdown",
    packages=find_packages(include=["mmkeras", "mmkeras.*"]),
    python_requires=">=3.10",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["mmkeras = mmkeras.cli:main"]},
    license="Apache-2.0",
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
