"""embkern: compiled kernels for small embedding vectors and fast embedding math.

Families (one module each): ``embkern.binary`` (sign binarization, Hamming distances and top-k,
float-vs-binary rescoring, multi-bit codes; also exported at top level), ``embkern.pq`` (product
quantization, faiss-compatible, exact ADC and 4-bit fast scan), ``embkern.projection`` (very
sparse random projection, FastRP), ``embkern.fde`` (MUVERA fixed dimensional encodings, Google's
exact output), ``embkern.lowrank`` (fused LoRA, factorized and sparse plus low-rank layers, many
adapters in one batch) and, with the ``dask`` extra, ``embkern.dask`` (the same kernels over row
blocks of dask arrays and exact sharded search).

Backends: the compiled CPU module (C++ with runtime ISA dispatch: scalar, AVX2, AVX-512,
AVX-512 + VPOPCNTDQ, NEON), a Numba fallback with the same results, and an optional CUDA module.
Every kernel takes ``backend=None|"cpu"|"numba"|"cuda"``.

Environment: ``EMBKERN_ISA`` caps the ISA tier (``scalar``, ``avx2``, ``avx512``, ``avx512_icl``,
``neon``); ``EMBKERN_NUM_THREADS`` sets the default thread count.
"""
from __future__ import annotations

from typing import Any, Dict, List

from . import binary, fde, lowrank, pq, projection
from ._dispatch import (
    cuda_available,
    cuda_status,
    get_num_threads,
    set_num_threads,
    use_isa,
)
from .binary import (
    asymmetric_scores,
    hamming_distance,
    hamming_range,
    hamming_topk,
    multibit_scores,
    multibit_topk,
    pack_signs,
)

__version__ = "0.1.0"

__all__ = [
    "binary",
    "pq",
    "fde",
    "projection",
    "lowrank",
    "pack_signs",
    "hamming_distance",
    "hamming_topk",
    "hamming_range",
    "asymmetric_scores",
    "multibit_scores",
    "multibit_topk",
    "set_num_threads",
    "get_num_threads",
    "available_isas",
    "available_backends",
    "get_isa",
    "set_isa",
    "use_isa",
    "cuda_available",
    "cuda_status",
    "show_config",
    "release_buffers",
]


def _core_module():
    from . import _dispatch

    if _dispatch._core is None:
        raise RuntimeError(f"the compiled CPU module is unavailable: {_dispatch.core_error()}")
    return _dispatch._core


def release_buffers() -> None:
    """Free the buffers embkern keeps for reuse.

    Large results (1 MiB and up: distance matrices, projections, FastRP's state, PQ scans, FDE
    batches, low-rank outputs) are written into buffers that earlier results of the same size
    released, when there are any, which skips the operating system's page zeroing of fresh memory
    (for a 20,000 x 20,000 distance matrix, three times the distance computation); so are large
    working buffers (packed low-rank factors, projection tables). At most 6 released buffers and
    2 GiB are kept; each result is still a fresh array owning its memory. This frees them now.
    """
    from . import _dispatch

    if _dispatch._core is not None:
        _dispatch._core.release_buffers()


def available_isas() -> List[str]:
    """ISA tiers that are compiled in and that this CPU can run, narrow to wide."""
    from . import _dispatch

    return list(_dispatch._core.supported_isas()) if _dispatch._core is not None else []


def get_isa() -> str:
    """The ISA tier whose kernels are in use."""
    return _core_module().get_isa()


def set_isa(isa: str) -> None:
    """Use ISA tier `isa` ("best" for the widest supported). Process-wide; for tests and
    benchmarks (``EMBKERN_ISA`` sets the tier at import)."""
    _core_module().set_isa(isa)


def available_backends() -> List[str]:
    """Backends usable in this process: "cpu", "numba", "cuda"."""
    from . import _dispatch

    out = []
    if _dispatch._core is not None:
        out.append("cpu")
    try:
        import numba  # noqa: F401

        out.append("numba")
    except ImportError:
        pass
    if cuda_available():
        out.append("cuda")
    return out


def _cuda_families() -> List[str]:
    """Families with kernels in the CUDA module, as built (empty when it was not built)."""
    try:
        from . import _cuda  # type: ignore[attr-defined]
    except ImportError:
        return []
    return list(getattr(_cuda, "families", ()))


def show_config(print_out: bool = True) -> Dict[str, Any]:
    """Report the ISA tiers, backends, threads and CUDA status; prints it and returns a dict."""
    import os

    from . import _dispatch

    core = _dispatch._core
    cfg: Dict[str, Any] = {
        "version": __version__,
        "cpu_module": core is not None,
        "cpu_module_error": _dispatch.core_error(),
        "cpu_features": core.cpu_features() if core is not None else "",
        "compiled_isas": list(core.compiled_isas()) if core is not None else [],
        "supported_isas": available_isas(),
        "isa": core.get_isa() if core is not None else None,
        "EMBKERN_ISA": os.environ.get("EMBKERN_ISA"),
        "backends": available_backends(),
        "num_threads": get_num_threads(),
        "cuda": cuda_status(),
        "cuda_families": _cuda_families(),
    }
    if print_out:
        width = max(len(k) for k in cfg)
        for key, value in cfg.items():
            print(f"{key:<{width}} : {value}")
    return cfg
