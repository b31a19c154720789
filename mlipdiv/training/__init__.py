"""Training MLIPs on a split: packed device data, element references, the loop, metrics, progress.

``train(TrainConfig(...), out_dir)`` is the entry point (see :mod:`mlipdiv.training.trainer` for the files a run
writes). ``TrainConfig`` is light (no torch), so the CLI can build its flags from it; ``train`` and ``Progress``
import torch and PyG when first used.
"""

from typing import Any

from mlipdiv.training.config import ModelConfig, OptimConfig, TrainConfig

__all__ = ["ModelConfig", "OptimConfig", "Progress", "TrainConfig", "train"]


def __getattr__(name: str) -> Any:
    """``train`` and ``Progress`` on first use: importing the trainer imports torch."""
    if name in ("train", "Progress"):
        from mlipdiv.training import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
