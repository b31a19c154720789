"""Compiled CPU kernels of the message steps (``cfconv_cpu.cpp``, ``painn_cpu.cpp``): built once, loaded, or skipped.

One loader for every kernel library: each is built with torch's cpp_extension into :func:`mlipdiv.paths.kernel_dir`,
keyed by its source and the torch version, and loaded with ``torch.ops.load_library`` (its ops then live under
``torch.ops.<name>``). Without a compiler, or with ``MLIPDIV_CPU_KERNELS=0``, the caller's PyTorch path is used.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import torch
from torch import Tensor

from mlipdiv.io.atomic import atomic_path
from mlipdiv.paths import kernel_dir

__all__ = ["build_key", "gather_pairs", "load_cpu_kernels"]

FLAGS = ["-O3"]
HEADERS = "*.h"  # beside the sources, included by them: part of every build's key


def load_cpu_kernels(name: str, source: Path, what: str) -> bool:
    """Load the kernel library ``name`` built from ``source``, building it on first use.

    False when ``MLIPDIV_CPU_KERNELS=0`` or when it cannot be built (no C++ compiler; warns, naming ``what``): the
    caller's PyTorch path then computes the same values, more slowly. Callers cache the answer (one try per process).
    """
    if os.environ.get("MLIPDIV_CPU_KERNELS", "1") == "0":
        return False
    try:
        _load_library(name, source)
    except Exception as exc:  # noqa: BLE001 - any build failure falls back to PyTorch; first line says what failed
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        warnings.warn(
            f"mlipdiv: {what} unavailable ({first}); training on CPU runs the slower plain-PyTorch path. "
            "Install a C++ compiler (g++) to build them, or set MLIPDIV_CPU_KERNELS=0 to silence this.",
            stacklevel=3,
        )
        return False
    return True


def build_key(source: Path) -> str:
    """What a build depends on: the source, the headers beside it (it includes them), torch's version and the flags;
    a change to any of them builds anew instead of loading a stale library."""
    text = source.read_bytes() + b"".join(h.read_bytes() for h in sorted(source.parent.glob(HEADERS)))
    return hashlib.sha256(text + f"{torch.__version__} {FLAGS}".encode()).hexdigest()[:16]


def _load_library(name: str, source: Path) -> None:
    """Load the compiled library, cached in :func:`mlipdiv.paths.kernel_dir` by source, the headers beside it and
    torch version.

    Each build runs in a private folder and is renamed into place when complete, so concurrent first uses, or a
    process killed while compiling (a cancelled run), never leave a half-written library or a lock behind.
    """
    from torch.utils.cpp_extension import load

    target = kernel_dir() / f"{name}-{build_key(source)}.so"
    if target.exists():
        torch.ops.load_library(target)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    if shutil.which("ninja") is None:  # the `ninja` wheel of requirements.txt, when the venv is not on PATH
        os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as build:
        load(name=name, sources=[str(source)], extra_cflags=FLAGS, build_directory=build,
             is_python_module=False, verbose=False)  # builds and loads
        with atomic_path(target) as tmp:  # another process may be loading it: it sees the old file or the new one
            shutil.copyfile(Path(build) / f"{name}.so", tmp)


def gather_pairs(x: Tensor, src: Tensor) -> Tensor:
    """(2, n_pairs, C): ``[x[a], x[b]]`` for the pairs ``(a, b)`` (``src`` is both halves of the symmetric edges)."""
    return x.index_select(0, src).view(2, src.shape[0] // 2, x.shape[1])
