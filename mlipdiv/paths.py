"""Where things live on disk: the shipped dataset, the run store and caches.

Environment variables let tests and deployments point elsewhere without flags on every call.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = PROJECT_ROOT / "data"


def default_dataset() -> Path:
    """The dataset used when no ``--dataset`` is given (``MLIPDIV_DATASET`` overrides the shipped one)."""
    return Path(os.environ.get("MLIPDIV_DATASET", DATA_DIR / "default.h5"))


def home() -> Path:
    """Root of the run store (``MLIPDIV_HOME``, default ``./runs`` in the working directory)."""
    return Path(os.environ.get("MLIPDIV_HOME", "runs"))


def cache_dir() -> Path:
    """Cache for derived artefacts (descriptors, UMAP maps); ``MLIPDIV_CACHE`` overrides."""
    return Path(os.environ.get("MLIPDIV_CACHE", PROJECT_ROOT / ".cache"))


def kernel_dir() -> Path:
    """Compiled CPU kernels, where PyTorch keeps its own (``TORCH_EXTENSIONS_DIR``, default
    ``~/.cache/torch_extensions``): one build per machine, whatever :func:`cache_dir` a run or a test uses."""
    root = os.environ.get("TORCH_EXTENSIONS_DIR") or Path.home() / ".cache" / "torch_extensions"
    return Path(root) / "mlipdiv"
