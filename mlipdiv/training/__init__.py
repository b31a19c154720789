"""Training MLIPs on a split: packed device data, element references, the loop, metrics, progress.

``train(TrainConfig(...), out_dir)`` is the entry point (see :mod:`mlipdiv.training.trainer` for the files a run
writes); heavy imports (torch, PyG) happen when this package is imported, so import it lazily from CLIs and pages.
"""

from mlipdiv.training.config import TrainConfig
from mlipdiv.training.trainer import Progress, train

__all__ = ["Progress", "TrainConfig", "train"]
