"""GPU check cases of the fde family (loaded by bench/gpu_check.py): smoke() and bench()."""
import time

import numpy as np

from embkern import fde
from embkern._cuda_ops import fde as cf

try:
    from embkern._core import fde as _cpu
except ImportError:  # the numba fallback has the same functions
    from embkern._numba import fde as _cpu

# (label, FDEConfig keywords): the paper's 10,240-dim documents, an identity FDE, and the paper's
# final-projection recipe (40, 6, 128) -> 10,240
CONFIGS = (
    ("ams R20 k5 p16 fill", dict(num_repetitions=20, num_simhash_projections=5, projection_type="ams_sketch",
                                 projection_dimension=16, fill_empty_partitions=True)),
    ("identity R20 k5 fill", dict(num_repetitions=20, num_simhash_projections=5, fill_empty_partitions=True)),
    ("identity R40 k6 final 10240", dict(num_repetitions=40, num_simhash_projections=6,
                                         fill_empty_partitions=True, final_projection_dimension=10240)),
)


def _args(cfg, document):
    gauss, col, sign, fidx, fsign = fde._tables(cfg, "cpu", _cpu)
    return (gauss, col, sign, fidx, fsign, cfg.num_repetitions, cfg.num_simhash_projections,
            cfg.block_dimension, cfg.final_projection_dimension or 0, document,
            cfg.fill_empty_partitions, cfg.projection_type == "ams_sketch")


def smoke() -> None:
    """A few kernel calls on host (numpy) inputs against the CPU backend (bit for bit)."""
    rng = np.random.default_rng(11)
    sizes = [5, 0, 1, 130, 17, 64]
    off = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    for d, kw in ((24, dict(num_repetitions=3, num_simhash_projections=4, projection_type="ams_sketch",
                            projection_dimension=8, fill_empty_partitions=True)),
                  (33, dict(num_repetitions=2, num_simhash_projections=5, fill_empty_partitions=True,
                            final_projection_dimension=100)),
                  (8, dict(num_repetitions=2))):
        cfg = fde.FDEConfig(d, **kw)
        x = rng.standard_normal((int(off[-1]), d)).astype(np.float32)
        for document in (True, False):
            a = _args(cfg, document)
            got = cf.encode(x, off, *a)
            want = _cpu.encode(x, off, *a)
            assert got.shape == want.shape and np.array_equal(got.view(np.uint32), want.view(np.uint32)), \
                f"fde encode d={d} {kw} document={document}"
    x[3, 1] = np.nan
    try:
        cf.encode(x, off, *_args(cfg, True))
    except ValueError as e:
        assert "point cloud 0" in str(e), str(e)
    else:
        raise AssertionError("NaN input was not reported")


def _torch_fde(torch, x, cfg, tables, document, chunk):
    """The same FDE with torch ops: one matmul for all SimHash (+ dense AMS) projections,
    index_add_ into (doc, repetition, partition) buckets, bincount for counts, argmin over Hamming
    distances for empty partitions, index_add_ for the final count sketch. x: (N, n, d) float32."""
    N, n, d = x.shape
    R, k, p = cfg.num_repetitions, cfg.num_simhash_projections, cfg.block_dimension
    B = 1 << k
    gauss, ams_dense, fidx, fsign = tables
    shifts = (2 ** torch.arange(k - 1, -1, -1, device=x.device)).to(torch.int64)
    outs = []
    for s in range(0, N, chunk):
        xc = x[s:s + chunk]
        C = xc.shape[0]
        bits = (xc @ gauss).view(C, n, R, k) > 0
        pref = torch.cumsum(bits.to(torch.int64), -1) % 2  # Gray -> binary: prefix XOR
        part = (pref * shifts).sum(-1)  # (C, n, R)
        if ams_dense is not None:
            proj = (xc @ ams_dense).view(C, n, R, p)
        else:
            proj = xc[:, :, None, :].expand(C, n, R, d)
        bucket = (torch.arange(C, device=x.device)[:, None, None] * R
                  + torch.arange(R, device=x.device)[None, None, :]) * B + part  # (C, n, R)
        flat = bucket.reshape(-1)
        sums = torch.zeros(C * R * B, p, device=x.device).index_add_(0, flat, proj.reshape(-1, p))
        if document:
            counts = torch.bincount(flat, minlength=C * R * B)
            sums /= counts.clamp(min=1)[:, None].to(sums.dtype)
            if cfg.fill_empty_partitions:
                empty = torch.nonzero(counts == 0).squeeze(1)
                c, r, b = empty // (R * B), (empty // B) % R, empty % B
                g_tok = part.permute(0, 2, 1)[c, r]  # (E, n)
                g_tok = g_tok ^ (g_tok >> 1)
                t = (b ^ (b >> 1))[:, None] ^ g_tok
                dist = torch.zeros_like(t)
                for j in range(k):
                    dist += (t >> j) & 1
                tok = torch.argmin(dist, dim=1)  # first minimum: the lowest token index
                sums[empty] = proj[c, tok, r]
        inner = sums.view(C, R * B * p)
        if fidx is not None:
            out = torch.zeros(C, cfg.final_projection_dimension, device=x.device)
            out.index_add_(1, fidx, inner * fsign)
            inner = out
        outs.append(inner)
    return torch.cat(outs)


def _torch_tables(torch, cfg):
    gauss, col, sign, fidx, fsign = fde._tables(cfg, "cpu", _cpu)
    d, R, p = cfg.dimension, cfg.num_repetitions, cfg.block_dimension
    g = torch.from_numpy(np.ascontiguousarray(gauss)).cuda()
    dense = None
    if cfg.projection_type == "ams_sketch":
        a = np.zeros((d, R * p), np.float32)
        for r in range(R):
            a[np.arange(d), r * p + col[r]] = sign[r]
        dense = torch.from_numpy(a).cuda()
    if cfg.final_projection_dimension is not None:
        return g, dense, torch.from_numpy(fidx.astype(np.int64)).cuda(), torch.from_numpy(fsign).cuda()
    return g, dense, None, None


def bench(emit, ceilings: dict, quick: bool, deadline: float, timer) -> None:
    """embkern vs a torch implementation of the same FDE, and the CPU path; docs/s per row."""
    import torch

    n_tok, d = 128, 128
    sms, clk = ceilings.get("device_sms"), ceilings.get("device_max_sm_clock")  # SMs, MHz
    fp32_ops = sms * clk * 1e6 * 128 if sms and clk else None  # fp32 lanes x clock
    read_bw = ceilings.get("hbm_read")  # TB/s
    g = torch.Generator(device="cuda").manual_seed(3)
    for label, kw in CONFIGS:
        if time.monotonic() > deadline - 30:
            emit(family="fde", case=label, status="skip: bench time box")
            continue
        cfg = fde.FDEConfig(d, **kw)
        D = cfg.output_dimension
        # documents per call: 100k at the paper's 10,240 dims; fewer where the output is larger
        n_docs = 100_000 if D <= 10_240 and cfg.final_projection_dimension is None else 10_000
        if quick:
            n_docs //= 10
        xs = [torch.randn(n_docs, n_tok, d, device="cuda", generator=g) for _ in range(2)]
        case = f"encode_documents {label} docs={n_docs} n={n_tok} d={d} D={D}"
        R, k = cfg.num_repetitions, cfg.num_simhash_projections
        bytes_floor = n_docs * (n_tok * d + D) * 4
        floors = []
        if read_bw:
            floors.append(bytes_floor / (read_bw * 1e12))
        if fp32_ops:  # the exact sketch: a separately rounded multiply and add per (token, column, i)
            floors.append(2.0 * n_docs * n_tok * R * k * d / fp32_ops)
        floor = max(floors) if floors else None

        def record(impl, sec, reps, extra=None):
            emit(family="fde", case=case, impl=impl, status="ok", median_ms=round(sec * 1e3, 3), reps=reps,
                 docs_per_s=round(n_docs / sec), floor_ms=round(floor * 1e3, 3) if floor else None,
                 pct_of_floor=round(100 * floor / sec, 1) if floor else None, **(extra or {}))

        ours = None
        try:
            sec, reps = timer(lambda i: fde.encode_documents(xs[i % 2], cfg))
            ours = fde.encode_documents(xs[0], cfg)
            record("embkern", sec, reps)
        except Exception as e:
            emit(family="fde", case=case, impl="embkern", status=f"FAIL {type(e).__name__}: {e}")
        if time.monotonic() < deadline - 30:
            old_tf32 = torch.backends.cuda.matmul.allow_tf32
            torch.backends.cuda.matmul.allow_tf32 = False
            try:
                tables = _torch_tables(torch, cfg)
                chunk = max(1, min(n_docs, (1 << 30) // (n_tok * max(R * cfg.block_dimension, d) * 4)))
                sec, reps = timer(lambda i: _torch_fde(torch, xs[i % 2], cfg, tables, True, chunk))
                extra = {}
                if ours is not None:
                    ref = _torch_fde(torch, xs[0], cfg, tables, True, chunk)
                    scale = ref.abs().amax(1, keepdim=True).clamp(min=1e-30)
                    close = ((ours - ref).abs() <= 1e-5 * scale + 1e-5 * ref.abs()).all(1)
                    extra["rows_agree_frac"] = round(float(close.float().mean()), 5)
                    extra["note"] = "dense-matmul rounding: sign flips near hyperplanes move rows"
                record("torch matmul+index_add+bincount", sec, reps, extra)
            except Exception as e:
                emit(family="fde", case=case, impl="torch matmul+index_add+bincount",
                     status=f"FAIL {type(e).__name__}: {e}")
            finally:
                torch.backends.cuda.matmul.allow_tf32 = old_tf32
        if time.monotonic() < deadline - 30:
            try:  # the CPU path on a slice (all cores of this machine), for docs/s
                m = max(200, n_docs // 50)
                xh = xs[0][:m].cpu().numpy()
                fde.encode_documents(xh[:10], cfg, backend="cpu")  # tables cached
                t0 = time.perf_counter()
                fde.encode_documents(xh, cfg, backend="cpu")
                sec = time.perf_counter() - t0
                import embkern
                emit(family="fde", case=case, impl=f"embkern cpu ({embkern.get_num_threads()} threads, {m} docs)",
                     status="ok", median_ms=round(sec * 1e3 * n_docs / m, 3), reps=1,
                     docs_per_s=round(m / sec), note="time scaled to the case's document count")
            except Exception as e:
                emit(family="fde", case=case, impl="embkern cpu", status=f"FAIL {type(e).__name__}: {e}")
        del xs, ours
        torch.cuda.empty_cache()
