"""Sparse random projection and FastRP.

``SparseRandomProjection`` has scikit-learn's estimator interface and entry distribution (Li,
Hastie and Church's very sparse projection; density "auto" = 1 / sqrt(n_features), nonzeros
+-sqrt(1 / density) / sqrt(n_components)) without importing scikit-learn. Its matrix R is never
materialised densely: the kernels generate it from ``seed`` with a counter-based hash keyed by
(seed, feature, component) (``csrc/projection/srp_rng.hpp``), column by column, so the compiled
path, the Numba fallback and every thread count produce the same matrix and the same numbers. Dense
input is multiplied by the generated sparse matrix (kept in CSR form, ~nnz(R) entries, after the
first call); sparse input generates R's columns on the fly for the features it touches.
``from_sklearn`` wraps a fitted scikit-learn projection and applies its exact matrix.

``sparse_project(x, components)`` is the kernel for a given CSR matrix; ``fastrp`` is FastRP with
Neo4j GDS's semantics (per-node seeded initial vectors of density 1/3, mean-then-normalise
propagation, weighted sum of the iterations).

Dtypes: float32 and float64 are computed natively (the result follows X); other numeric input is
converted to float64. NaN/inf in X is a ValueError.

CUDA: X (dense, or a cupyx / torch sparse CSR matrix) or the FastRP adjacency on a GPU runs there
(``backend=None`` or "cuda") and the result comes back in the caller's framework on its device;
numpy input with ``backend="cuda"`` gives numpy. The GPU generates the same matrix and computes the
same bits as the CPU. Device inputs are not scanned for NaN/inf (that would cost another full read):
they propagate into the result.
"""
from __future__ import annotations

import math
import numbers
import warnings
from typing import Any, Optional, Sequence

import numpy as np

from . import _dispatch as _d

__all__ = [
    "SparseRandomProjection",
    "sparse_project",
    "fastrp",
    "johnson_lindenstrauss_min_dim",
    "NotFittedError",
    "DataDimensionalityWarning",
]


class NotFittedError(ValueError, AttributeError):
    """Raised when a projection is used before ``fit`` (a ValueError and an AttributeError, as
    scikit-learn's)."""


class DataDimensionalityWarning(UserWarning):
    """n_components is larger than n_features: the projection does not reduce the dimension."""


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def _is_sparse(x: Any) -> bool:
    try:
        import scipy.sparse as sp
    except ImportError:
        return False
    return sp.issparse(x)


def johnson_lindenstrauss_min_dim(n_samples: int, *, eps: float = 0.1) -> int:
    """Components that preserve pairwise distances within ``eps`` for ``n_samples`` points:
    ``floor(4 ln(n_samples) / (eps^2 / 2 - eps^3 / 3))`` (scikit-learn's formula)."""
    eps = float(eps)
    if not 0.0 < eps < 1.0:
        raise ValueError(f"eps must be in (0, 1), got {eps!r}")
    if n_samples <= 0:
        raise ValueError(f"n_samples must be > 0, got {n_samples!r}")
    denominator = (eps**2 / 2) - (eps**3 / 3)
    return int(np.int64(4 * np.log(n_samples) / denominator))


def _seed_u64(seed: Any) -> int:
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    return int(seed) % (1 << 64)


def _ipow(base: float, e: int) -> float:
    """base**e by squaring with plain IEEE multiplies (no libm: identical on every platform)."""
    out = 1.0
    while e:
        if e & 1:
            out *= base
        base *= base
        e >>= 1
    return out


def _generator(k: int, density: float):
    """(mode, thr53, cdf) of the column generator (srp_rng.hpp) for k components."""
    empty = np.zeros(1, np.float64)
    if density >= 1.0 / 16 or k * density > 200:
        thr = 1 << 53 if density >= 1.0 else int(math.floor(density * 2.0**53))
        return 0, thr, empty
    p, q = float(density), 1.0 - float(density)
    ratio = p / q
    pmf = _ipow(q, k)
    cdf = [pmf]
    c = 0
    while cdf[-1] < 1.0 - 2.0**-52 and c < k:
        pmf = pmf * (k - c) / (c + 1) * ratio
        c += 1
        cdf.append(cdf[-1] + pmf)
        if pmf < 1e-300:
            break
    if c == k:
        cdf[-1] = 2.0
    else:
        cdf.append(2.0)
    return 1, 0, np.asarray(cdf, np.float64)


def _float_dtype(dtype) -> np.dtype:
    return np.dtype(dtype) if np.dtype(dtype) in (np.float32, np.float64) else np.dtype(np.float64)


def _check_finite(arr: np.ndarray, name: str) -> None:
    if not _d.all_finite(arr):
        raise ValueError(f"{name} contains NaN or inf (Input contains NaN or infinity)")


def _as_csr(x: Any, name: str, dtype=None, *, check_entries: bool = True):
    """(indptr int64, indices int32, data float, shape) of a scipy sparse matrix in CSR form.

    check_entries=False leaves the finiteness and column-range scans to a kernel that checks the
    entries as it reads them (the compiled srp_sparse), instead of two more passes over X here."""
    m = x.tocsr()
    if m.dtype.kind == "c":
        raise ValueError(f"Complex data not supported: {name} has dtype {m.dtype}")
    if m.dtype.kind not in "fiub":
        raise TypeError(f"{name} must be numeric, got dtype {m.dtype}")
    dt = _float_dtype(m.dtype) if dtype is None else np.dtype(dtype)
    n, d = m.shape
    indptr = np.ascontiguousarray(m.indptr, dtype=np.int64)
    nnz = int(indptr[-1]) if len(indptr) else 0
    indices, data = m.indices[:nnz], np.ascontiguousarray(m.data[:nnz], dtype=dt)
    if check_entries:
        _check_finite(data, name)
    narrowed = indices.dtype != np.int32
    if narrowed and d > np.iinfo(np.int32).max:
        raise ValueError(f"{name} has {d} columns; at most 2**31 - 1 are supported")
    # wider ids are checked before int32 could wrap them (2**32 + 5 must not become 5)
    if (check_entries or narrowed) and nnz and (indices.min() < 0 or indices.max() >= d):
        raise ValueError(f"{name} has column indices outside [0, {d})")
    indices = np.ascontiguousarray(indices, dtype=np.int32)
    return indptr, indices, data, (n, d)


def _validate_dense(x: Any, name: str) -> np.ndarray:
    """scikit-learn-style validation of a dense 2-D numeric array (float32/float64 kept)."""
    if hasattr(x, "__dlpack__") and not hasattr(x, "__array__"):
        x = _d.as_array(x, name)
    arr = np.asarray(x)
    if arr.dtype.kind == "c":
        raise ValueError(f"Complex data not supported: {name} has dtype {arr.dtype}")
    if arr.dtype == object:
        arr = arr.astype(np.float64)  # raises TypeError for non-numbers
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if arr.ndim != 2:
        if arr.ndim == 1:
            raise ValueError(
                f"Expected 2D array, got 1D array instead: {name} has shape {arr.shape}. Reshape your "
                "data either using array.reshape(-1, 1) if your data has a single feature or "
                "array.reshape(1, -1) if it contains a single sample.")
        raise ValueError(f"{name} must be 2-D, got shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=_float_dtype(arr.dtype))
    _check_finite(arr, name)
    return arr


def _check_nonempty(shape, name: str) -> None:
    if shape[0] < 1:
        raise ValueError(f"Found array with 0 sample(s) (shape={tuple(shape)}) while a minimum of 1 is required ({name}).")
    if shape[1] < 1:
        raise ValueError(f"Found array with 0 feature(s) (shape={tuple(shape)}) while a minimum of 1 is required ({name}).")


def _feature_names(x: Any):
    cols = getattr(x, "columns", None)
    if cols is None or _is_sparse(x):
        return None
    names = np.asarray(list(cols), dtype=object)
    if len(names) and all(isinstance(c, str) for c in names):
        return names
    return None


# ---------------------------------------------------------------------------------------------
# CUDA device arrays (embkern._cuda_ops.projection holds the framework helpers)
# ---------------------------------------------------------------------------------------------
def _on_cuda(x: Any) -> bool:
    """x lives on a CUDA device: a dense device array, or a cupyx / torch sparse CSR matrix."""
    if _d._is_device_array(x):
        return True
    return (type(x).__module__ or "").startswith("cupyx.scipy.sparse")


def _use_cuda(backend: Optional[str], *arrays: Any) -> bool:
    _d.choose_backend(backend)  # validates the name
    return backend in (None, "cuda") and any(_on_cuda(a) for a in arrays)


def _cuda_projection():
    _d.backend_module("projection", "cuda")  # RuntimeError saying why when the backend is unusable
    from ._cuda_ops import projection as cp

    return cp


def _device_input(x: Any, name: str):
    """("dense", array, (n, d), dtype) or ("csr", (indptr, indices, data), (n, d), dtype) of a
    device X in the kernels' dtypes."""
    cp = _cuda_projection()
    parts = cp.device_csr(x)
    if parts is not None:
        xptr, xind, xval, shape = cp.csr_input(parts, name)
        return "csr", (xptr, xind, xval), shape, cp.dtype_of(xval, name)
    arr, shape, dtype = cp.dense_input(x, name)
    return "dense", arr, shape, dtype


def _upload_csr(cp, like: Any, name: str, *arrays):
    op = cp.lead(like, name)
    return tuple(cp.upload(a, op) for a in arrays)


def _sparse_project_cuda(x: Any, components: Any):
    cp = _cuda_projection()
    kind, xd, (n, d), dt = _device_input(x, "x")
    cptr, cind, cval, (k, cd) = _components_csr(components, dt)
    if cd != d:
        raise ValueError(f"components must have n_features = {d} columns (x has {d}), got {cd}")
    if kind == "dense":
        return cp.csr_dense(xd, *_upload_csr(cp, xd, "x", cptr, cind, cval), k, validate=False)
    tptr, tind, tval = _transpose_csr(cptr, cind, cval, (k, d))
    xptr, xind, xval = xd
    return cp.csr_sparse(xptr, xind, xval, n, *_upload_csr(cp, xptr, "x", tptr, tind, tval), k)


# ---------------------------------------------------------------------------------------------
# the kernel for a given CSR matrix
# ---------------------------------------------------------------------------------------------
def _components_csr(components: Any, dtype, name: str = "components"):
    if _is_sparse(components):
        return _as_csr(components, name, dtype)
    arr = np.asarray(components)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D scipy sparse matrix (or dense array), got shape {arr.shape}")
    import scipy.sparse as sp

    return _as_csr(sp.csr_matrix(arr), name, dtype)


def _transpose_csr(indptr, indices, data, shape):
    """CSR of the transpose (stable: entries of each new row keep ascending old-row order)."""
    rows, cols = shape
    counts = np.diff(indptr)
    old_rows = np.repeat(np.arange(rows, dtype=np.int32), counts)
    order = np.argsort(indices, kind="stable")
    t_ptr = np.zeros(cols + 1, np.int64)
    np.cumsum(np.bincount(indices, minlength=cols), out=t_ptr[1:])
    return t_ptr, np.ascontiguousarray(old_rows[order]), np.ascontiguousarray(data[order])


def sparse_project(x: Any, components: Any, *, backend: Optional[str] = None) -> np.ndarray:
    """``x @ components.T`` for a sparse ``components`` (n_components, n_features), as a dense
    (n, n_components) array. ``x`` is dense (float32/float64 kept, else float64) or a scipy sparse
    matrix; ``components`` a scipy sparse matrix (any format) or a dense 2-D array, cast to x's
    dtype. Each output is summed over the component's stored entries in order (sparse x: over x's
    stored entries), so every backend and thread count gives the same bits. On a CUDA device
    (dense, or a cupyx / torch sparse CSR x) the result is a device array of x's framework."""
    if _use_cuda(backend, x):
        return _sparse_project_cuda(x, components)
    if _is_sparse(x):
        xptr, xind, xval, (n, d) = _as_csr(x, "x")
        dt = xval.dtype
    else:
        xd = _validate_dense(x, "x")
        (n, d), dt = xd.shape, xd.dtype
    cptr, cind, cval, (k, cd) = _components_csr(components, dt)
    if cd != d:
        raise ValueError(f"components must have n_features = {d} columns (x has {d}), got {cd}")
    if _is_sparse(x):
        tptr, tind, tval = _transpose_csr(cptr, cind, cval, (k, d))
        return _d.kernel("projection", "csr_sparse", backend)(xptr, xind, xval, n, tptr, tind, tval, k)
    return _d.kernel("projection", "csr_dense", backend, x)(xd, cptr, cind, cval, k)


# ---------------------------------------------------------------------------------------------
# the estimator
# ---------------------------------------------------------------------------------------------
class SparseRandomProjection:
    """Very sparse random projection with scikit-learn's interface and distribution.

    Parameters: ``n_components`` ("auto": the Johnson-Lindenstrauss bound for the fitted number of
    samples and ``eps``), ``density`` ("auto" = 1 / sqrt(n_features), or a float in (0, 1]),
    ``eps`` (for "auto" components), ``seed`` (any int; the matrix is a function of it alone).
    Fitted attributes: ``n_components_``, ``density_``, ``n_features_in_``, and ``components_`` (a
    scipy CSR matrix built on request). ``transform`` takes dense arrays and scipy sparse matrices
    and returns a dense array of X's float dtype.
    """

    def __init__(self, n_components="auto", *, density="auto", eps=0.1, seed=0):
        self.n_components = n_components
        self.density = density
        self.eps = eps
        self.seed = seed

    # -- scikit-learn protocol ------------------------------------------------------------------
    def get_params(self, deep: bool = True) -> dict:
        return {"n_components": self.n_components, "density": self.density, "eps": self.eps,
                "seed": self.seed}

    def set_params(self, **params) -> "SparseRandomProjection":
        valid = self.get_params()
        for key, value in params.items():
            if key not in valid:
                raise ValueError(f"Invalid parameter {key!r} for estimator {type(self).__name__}. "
                                 f"Valid parameters are: {sorted(valid)!r}.")
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        defaults = {"n_components": "auto", "density": "auto", "eps": 0.1, "seed": 0}
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items() if
                         not (isinstance(v, type(defaults[k])) and v == defaults[k]))
        return f"{type(self).__name__}({args})"

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "n_components_")

    def __sklearn_tags__(self):
        from sklearn.utils import InputTags, TargetTags, Tags, TransformerTags

        return Tags(estimator_type=None, target_tags=TargetTags(required=False),
                    transformer_tags=TransformerTags(preserves_dtype=["float64", "float32"]),
                    input_tags=InputTags(sparse=True))

    # -- fitting --------------------------------------------------------------------------------
    def fit(self, X, y=None) -> "SparseRandomProjection":
        """Choose n_components_ and density_ from X's shape (X is validated, not stored)."""
        names = _feature_names(X)
        if _on_cuda(X):
            _, _, shape, dtype = _device_input(X, "X")
        elif _is_sparse(X):
            _, _, data, shape = _as_csr(X, "X")
            dtype = data.dtype
        else:
            arr = _validate_dense(X, "X")
            shape, dtype = arr.shape, arr.dtype
        _check_nonempty(shape, "X")
        n_samples, n_features = shape
        density = self.density
        if isinstance(density, str):
            if density != "auto":
                raise ValueError(f"density must be 'auto' or a float in (0, 1], got {density!r}")
            density = 1.0 / math.sqrt(n_features)
        else:
            if isinstance(density, bool) or not isinstance(density, numbers.Real):
                raise TypeError(f"density must be 'auto' or a float, got {type(density).__name__}")
            density = float(density)
            if not 0.0 < density <= 1.0:
                raise ValueError(f"Expected density in range ]0, 1], got: {density!r}")
        if isinstance(self.n_components, str):
            if self.n_components != "auto":
                raise ValueError(f"n_components must be 'auto' or a positive int, got {self.n_components!r}")
            k = johnson_lindenstrauss_min_dim(n_samples, eps=self.eps)
            if k <= 0:
                raise ValueError(f"eps={self.eps} and n_samples={n_samples} lead to a target dimension "
                                 f"of {k} which is invalid")
            if k > n_features:
                raise ValueError(f"eps={self.eps} and n_samples={n_samples} lead to a target dimension "
                                 f"of {k} which is larger than the original space with "
                                 f"n_features={n_features}")
        else:
            k = _d.as_int(self.n_components, "n_components")
            if k <= 0:
                raise ValueError(f"n_components must be greater than 0, got {k}")
            if k > np.iinfo(np.int32).max:
                raise ValueError(f"n_components must be < 2**31, got {k}")
            if k > n_features:
                warnings.warn(f"The number of components is higher than the number of features: "
                              f"n_features < n_components ({n_features} < {k}). The dimensionality "
                              "of the problem will not be reduced.", DataDimensionalityWarning)
        seed = _seed_u64(self.seed)
        self.n_components_ = int(k)
        self.density_ = density
        self.n_features_in_ = int(n_features)
        if names is not None:
            self.feature_names_in_ = names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self._seed = seed
        self._dtype = np.dtype(dtype)
        self._explicit = None
        self._cache = {}
        return self

    def fit_transform(self, X, y=None) -> np.ndarray:
        return self.fit(X).transform(X)

    @classmethod
    def from_sklearn(cls, estimator) -> "SparseRandomProjection":
        """A projection applying the exact matrix of a fitted scikit-learn random projection
        (``SparseRandomProjection`` or ``GaussianRandomProjection``) through embkern's kernels."""
        comp = getattr(estimator, "components_", None)
        if comp is None:
            raise NotFittedError(f"{type(estimator).__name__} is not fitted (no components_)")
        dt = _float_dtype(comp.dtype)
        cptr, cind, cval, (k, d) = _components_csr(comp, dt, "components_")
        self = cls(n_components=int(k), density=float(getattr(estimator, "density_", 1.0)))
        self.n_components_ = int(k)
        self.density_ = float(getattr(estimator, "density_", 1.0))
        self.n_features_in_ = int(d)
        self._seed = 0
        self._dtype = dt
        self._explicit = (cptr, cind, cval)
        self._cache = {}
        return self

    # -- the matrix -----------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "n_components_"):
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet. Call 'fit' "
                                 "with appropriate arguments before using this estimator.")

    def _gen_args(self):
        mode, thr, cdf = _generator(self.n_components_, self.density_)
        return self._seed, self.n_components_, mode, thr, cdf

    def _scale(self) -> float:
        return math.sqrt(1.0 / self.density_) / math.sqrt(self.n_components_)

    def _columns(self, backend):
        """R^T as CSR over the features: (indptr, component ids, negative flags)."""
        key = ("cols", _d.choose_backend(backend))
        if key not in self._cache:
            seed, k, mode, thr, cdf = self._gen_args()
            fn = _d.kernel("projection", "srp_columns", backend)
            self._cache[key] = fn(seed, self.n_features_in_, k, mode, thr, cdf)
        return self._cache[key]

    def _rows(self, dtype, backend):
        """R as CSR over the components with values in `dtype`."""
        key = ("rows", np.dtype(dtype).str, _d.choose_backend(backend))
        if key not in self._cache:
            if self._explicit is not None:
                cptr, cind, cval = self._explicit
                self._cache[key] = (cptr, cind, np.ascontiguousarray(cval, dtype=dtype))
            else:
                tptr, tind, neg = self._columns(backend)
                s = np.asarray(self._scale(), dtype=dtype)
                vals = np.where(neg.astype(bool), -s, s).astype(dtype)
                self._cache[key] = _transpose_csr(tptr, tind, vals, (self.n_features_in_, self.n_components_))
        return self._cache[key]

    @property
    def components_(self):
        """The projection matrix as a scipy CSR matrix (n_components_, n_features_in_), in the
        dtype of the data it was fitted on (built on request; needs scipy)."""
        self._check_fitted()
        import scipy.sparse as sp

        ptr, ind, val = self._rows(self._dtype, None)
        return sp.csr_matrix((val.copy(), ind.copy(), ptr.copy()),
                             shape=(self.n_components_, self.n_features_in_))

    # -- transform ------------------------------------------------------------------------------
    def _check_names(self, X) -> None:
        fitted = getattr(self, "feature_names_in_", None)
        names = _feature_names(X)
        if fitted is None and names is not None:
            warnings.warn(f"X has feature names, but {type(self).__name__} was fitted without feature names")
        elif fitted is not None and names is None:
            warnings.warn(f"X does not have valid feature names, but {type(self).__name__} was fitted "
                          "with feature names")
        elif fitted is not None and (len(fitted) != len(names) or np.any(fitted != names)):
            raise ValueError("The feature names should match those that were passed during fit.\n"
                             f"Feature names seen at fit time: {list(fitted)}; now: {list(names)}")

    def transform(self, X, *, backend: Optional[str] = None) -> np.ndarray:
        """Project X (n_samples, n_features_in_) to a dense (n_samples, n_components_) array."""
        self._check_fitted()
        self._check_names(X)
        if _use_cuda(backend, X):
            return self._transform_cuda(X)
        sparse = _is_sparse(X)
        if sparse:
            # the compiled srp_sparse checks X's entries itself, as it reads them
            kernel_checks = self._explicit is None and _d.choose_backend(backend) == "cpu"
            xptr, xind, xval, shape = _as_csr(X, "X", check_entries=not kernel_checks)
            dtype = xval.dtype
        else:
            arr = _validate_dense(X, "X")
            shape, dtype = arr.shape, arr.dtype
        if shape[1] != self.n_features_in_:
            raise ValueError(f"X has {shape[1]} features, but {type(self).__name__} is expecting "
                             f"{self.n_features_in_} features as input.")
        k = self.n_components_
        if sparse:
            n = shape[0]
            if self._explicit is None:
                seed, k, mode, thr, cdf = self._gen_args()
                fn = _d.kernel("projection", "srp_sparse", backend)
                return fn(xptr, xind, xval, n, self.n_features_in_, seed, k, mode, thr, cdf,
                          dtype.type(self._scale()))
            rptr, rind, rval = self._rows(dtype, backend)
            key = ("cols_vals", dtype.str, _d.choose_backend(backend))
            if key not in self._cache:
                self._cache[key] = _transpose_csr(rptr, rind, rval, (k, self.n_features_in_))
            tptr, tind, tval = self._cache[key]
            return _d.kernel("projection", "csr_sparse", backend)(xptr, xind, xval, n, tptr, tind, tval, k)
        rptr, rind, rval = self._rows(dtype, backend)
        return _d.kernel("projection", "csr_dense", backend, X)(arr, rptr, rind, rval, k)


    def _transform_cuda(self, X):
        """transform for X on a CUDA device: the matrix is generated by the GPU (srp_columns),
        kept on the host in CSR form and uploaded once per device."""
        cp = _cuda_projection()
        kind, xd, shape, dtype = _device_input(X, "X")
        if shape[1] != self.n_features_in_:
            raise ValueError(f"X has {shape[1]} features, but {type(self).__name__} is expecting "
                             f"{self.n_features_in_} features as input.")
        k, n = self.n_components_, shape[0]
        lead = cp.lead(xd if kind == "dense" else xd[0], "X")
        if kind == "csr" and self._explicit is None:
            seed, k, mode, thr, cdf = self._gen_args()
            return cp.srp_sparse(*xd, n, self.n_features_in_, seed, k, mode, thr, cdf, dtype.type(self._scale()))
        which = "rows" if kind == "dense" else "cols_vals"
        key = ("device", which, np.dtype(dtype).str, lead.kind, lead.device)
        if key not in self._cache:
            rptr, rind, rval = self._rows(dtype, "cuda")
            host = (rptr, rind, rval) if kind == "dense" else _transpose_csr(rptr, rind, rval, (k, self.n_features_in_))
            self._cache[key] = tuple(cp.upload(a, lead) for a in host)
        if kind == "dense":
            return cp.csr_dense(xd, *self._cache[key], k, validate=False)
        return cp.csr_sparse(*xd, n, *self._cache[key], k)


# ---------------------------------------------------------------------------------------------
# FastRP
# ---------------------------------------------------------------------------------------------
def _finite_float(value: Any, name: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def _adjacency(adjacency: Any):
    """(indptr int64, indices int32, weights float32 or None, n) of a square adjacency."""
    if _is_sparse(adjacency):
        shape = adjacency.shape
        if len(shape) != 2 or shape[0] != shape[1]:
            raise ValueError(f"adjacency must be square, got shape {shape}")
        m = adjacency.tocsr()
        if m.dtype.kind not in "fiub":
            raise TypeError(f"adjacency must have real weights, got dtype {m.dtype}")
        n = shape[0]
        indptr, indices, data = m.indptr, m.indices, m.data
        nnz = int(indptr[-1]) if len(indptr) else 0
        indices, data = indices[:nnz], data[:nnz]
    elif isinstance(adjacency, (tuple, list)) and len(adjacency) in (2, 3):
        indptr = np.asarray(adjacency[0])
        indices = np.asarray(adjacency[1])
        data = np.asarray(adjacency[2]) if len(adjacency) == 3 and adjacency[2] is not None else None
        for arr, nm in ((indptr, "indptr"), (indices, "indices")):
            if arr.ndim != 1:
                raise ValueError(f"adjacency {nm} must be 1-D, got shape {arr.shape}")
            if arr.dtype.kind not in "iu":
                raise TypeError(f"adjacency {nm} must be integers, got dtype {arr.dtype}")
        if len(indptr) < 1:
            raise ValueError("adjacency indptr must have n_nodes + 1 entries")
        n = len(indptr) - 1
        if indptr[0] != 0 or np.any(np.diff(indptr) < 0) or indptr[-1] != len(indices):
            raise ValueError("adjacency indptr must start at 0, be non-decreasing and end at len(indices)")
        if data is not None:
            if data.ndim != 1 or len(data) != len(indices):
                raise ValueError("adjacency weights must be 1-D with one weight per index")
            if data.dtype.kind not in "fiub":
                raise TypeError(f"adjacency weights must be real, got dtype {data.dtype}")
    else:
        raise TypeError("adjacency must be a scipy sparse matrix or a tuple (indptr, indices[, weights])")
    if n >= 2**31:
        raise ValueError(f"at most 2**31 - 1 nodes are supported, got {n}")
    if len(indices) and (indices.min() < 0 or indices.max() >= n):
        raise ValueError(f"adjacency has node ids outside [0, {n})")
    indptr = np.ascontiguousarray(indptr, dtype=np.int64)
    indices = np.ascontiguousarray(indices, dtype=np.int32)
    weights = None
    if data is not None and len(data):
        w = np.ascontiguousarray(data, dtype=np.float32)
        if not np.isfinite(w).all():
            raise ValueError("adjacency weights contain NaN or inf")
        if (w < 0).any():
            raise ValueError("adjacency weights must be non-negative (FastRP averages neighbours)")
        if not (w == 1.0).all():
            weights = w
    return indptr, indices, weights, n


def fastrp(adjacency: Any, dim: int = 128, *, iteration_weights: Sequence[float] = (0.0, 1.0, 1.0),
           normalization_strength: float = 0.0, self_influence: float = 0.0, seed: int = 0,
           backend: Optional[str] = None) -> np.ndarray:
    """FastRP node embeddings with Neo4j GDS's semantics, float32 (n_nodes, dim).

    Initial vectors r_u: density 1/3, entries +-sqrt(3 / dim), drawn from (seed, u) by a
    counter-based hash and scaled by degree(u)**normalization_strength (degree 0: factor 1).
    Iteration i: e^i_u = the (edge-weighted) mean of the out-neighbours' e^{i-1}, L2-normalised
    (a node without neighbours gets zeros). Result: self_influence * normalize(r_u) + sum_i
    iteration_weights[i] * e^i_u. The number of iterations is len(iteration_weights).
    ``adjacency``: a square scipy sparse matrix (its values are the weights; give both directions
    of an undirected edge) or (indptr, indices[, weights]). Bit-identical for every thread count
    and backend.
    """
    dim = _d.as_int(dim, "dim")
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    try:
        weights_list = [_finite_float(w, "iteration_weights") for w in iteration_weights]
    except TypeError as exc:
        raise TypeError(f"iteration_weights must be a sequence of numbers ({exc})") from None
    ns = _finite_float(normalization_strength, "normalization_strength")
    si = _finite_float(self_influence, "self_influence")
    if not weights_list and si == 0.0:
        raise ValueError("iteration_weights must not be empty unless self_influence != 0")
    seed = _seed_u64(seed)
    device = _device_adjacency(adjacency) if backend in (None, "cuda") else None
    if device is not None:
        return _fastrp_cuda(device, dim, weights_list, ns, si, seed)
    indptr, indices, w, n = _adjacency(adjacency)
    scale = np.zeros(0, np.float64)  # empty: every factor 1 (no O(n) buffer)
    if ns != 0.0:
        deg = np.diff(indptr).astype(np.float64)
        scale = np.ones(n, np.float64)
        nz = deg > 0
        scale[nz] = np.power(deg[nz], ns)
        if not np.isfinite(scale).all():
            raise ValueError("degree ** normalization_strength overflows")
    iw = np.asarray(weights_list, np.float32)
    fn = _d.kernel("projection", "fastrp", backend)
    return fn(indptr, indices, w, n, dim, scale, seed, iw, np.float32(si))


def _device_adjacency(adjacency: Any):
    """(indptr, indices, weights or None, n) of an adjacency on a CUDA device (a cupyx / torch
    sparse CSR matrix, or a tuple of device arrays), in the kernels' dtypes; None otherwise."""
    if isinstance(adjacency, (tuple, list)) and len(adjacency) in (2, 3):
        if not (_d._is_device_array(adjacency[0]) or _d._is_device_array(adjacency[1])):
            return None
        cp = _cuda_projection()
        indptr, indices = adjacency[0], adjacency[1]
        data = adjacency[2] if len(adjacency) == 3 else None
        for arr, nm in ((indptr, "indptr"), (indices, "indices")):
            shape = cp.lead(arr, f"adjacency {nm}").shape
            if len(shape) != 1:
                raise ValueError(f"adjacency {nm} must be 1-D, got shape {shape}")
            if cp.dtype_of(arr, nm).kind not in "iu":
                raise TypeError(f"adjacency {nm} must be integers, got dtype {cp.dtype_of(arr, nm)}")
        n = cp.lead(indptr, "adjacency indptr").shape[0] - 1
        if n < 0:
            raise ValueError("adjacency indptr must have n_nodes + 1 entries")
        if data is not None:
            shape = cp.lead(data, "adjacency weights").shape
            if shape != cp.lead(indices, "adjacency indices").shape:
                raise ValueError("adjacency weights must be 1-D with one weight per index")
    elif _on_cuda(adjacency):
        cp = _cuda_projection()
        parts = cp.device_csr(adjacency)
        if parts is None:
            raise TypeError("adjacency must be a sparse matrix or a tuple (indptr, indices[, weights])")
        indptr, indices, data, shape = parts
        if len(shape) != 2 or shape[0] != shape[1]:
            raise ValueError(f"adjacency must be square, got shape {shape}")
        n = shape[0]
    else:
        return None
    if n >= 2**31:
        raise ValueError(f"at most 2**31 - 1 nodes are supported, got {n}")
    indptr = cp.astype(indptr, np.int64, "adjacency indptr")
    indices = cp.astype(indices, np.int32, "adjacency indices")
    w = None
    if data is not None and cp.lead(data, "adjacency weights").shape[0]:
        if cp.dtype_of(data, "weights").kind not in "fiub":
            raise TypeError(f"adjacency weights must be real, got dtype {cp.dtype_of(data, 'weights')}")
        w = cp.astype(data, np.float32, "adjacency weights")
        mod, wa = cp.framework(w)
        if not bool(mod.isfinite(wa).all()):
            raise ValueError("adjacency weights contain NaN or inf")
        if bool((wa < 0).any()):
            raise ValueError("adjacency weights must be non-negative (FastRP averages neighbours)")
        if bool((wa == 1).all()):
            w = None
    return indptr, indices, w, n


def _fastrp_cuda(device, dim: int, weights_list, ns: float, si: float, seed: int):
    """fastrp on a CUDA device: the degree scaling is computed on the host with numpy (as on the
    CPU, so the initial vectors are bit-identical), everything else on the GPU."""
    cp = _cuda_projection()
    indptr, indices, w, n = device
    scale = np.zeros(0, np.float64)
    if ns != 0.0:
        deg = np.diff(cp.to_host(indptr, "adjacency indptr")).astype(np.float64)
        scale = np.ones(n, np.float64)
        nz = deg > 0
        scale[nz] = np.power(deg[nz], ns)
        if not np.isfinite(scale).all():
            raise ValueError("degree ** normalization_strength overflows")
    iw = np.asarray(weights_list, np.float32)
    return cp.fastrp(indptr, indices, w, n, dim, scale, seed, iw, np.float32(si))
