"""GPU check cases of the lowrank family (loaded by bench/gpu_check.py): smoke() and bench().

Sizes follow specs/gpu.md §5 (h = d_in = d_out = 4096, r = 16), in float32 (embkern's low-rank
kernels are float32/float64 CUDA-core GEMMs; torch's peers run with TF32 off, so both sides round
the same way). Floors: bytes at the measured HBM read rate, or useful FLOPs at the fp32 FMA peak
derived from the device (SMs x 128 FMA/clk x max clock; not measured), whichever is larger.
"""
import time

import numpy as np

from embkern._cuda_ops import lowrank as clr

# Problem sizes (quick variants in parentheses are used with --quick).
SIZES = dict(
    h=4096, r=16,
    lora_m=(16, 4096), lora_m_quick=(16, 1024),
    multi=((64, 64), (4096, 16)), multi_quick=((64, 64), (1024, 16)),
    sparse_m=4096, sparse_m_quick=1024, sparse_r=128, sparse_density=0.03,
    lowrank_m=8192, lowrank_m_quick=2048, lowrank_r=64,
)


def _close(got, ref, tol):
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    scale = float(np.abs(ref).max()) if ref.size else 1.0
    return ref.shape == got.shape and (not ref.size or float(np.abs(got - ref).max()) <= tol * (scale or 1.0))


def smoke() -> None:
    """Every kernel (fused LoRA, low-rank, sparse + low-rank, multi-adapter; split-K and segment
    paths) on tiny numpy inputs against the CPU backend; small enough for compute-sanitizer."""
    from embkern import _core

    cpu = _core.lowrank
    rng = np.random.default_rng(7)
    for dt, tol in ((np.float32, 1e-5), (np.float64, 1e-12)):
        def r(*shape):
            return rng.standard_normal(shape).astype(dt)

        x, w, a, b, bias = r(37, 70), r(33, 70), r(5, 70), r(33, 5), r(33)
        assert _close(clr.lora_linear(x, w, a, b, 0.5, bias), cpu.lora_linear(x, w, a, b, 0.5, bias), tol), "lora"
        got = clr.lora_linear(x, w, a, b, 0.5, None, main_tile=1, shrink_splits=2, main_splits=2)
        assert _close(got, cpu.lora_linear(x, w, a, b, 0.5, None), tol), "lora split-K"
        s = rng.uniform(0.5, 2, 5).astype(dt)
        assert _close(clr.lowrank_linear(x, b, a, s, bias), cpu.lowrank_linear(x, b, a, s, bias), tol), "lowrank"
        mask = rng.random((33, 70)) < 0.1
        rows, cols = np.nonzero(mask)
        indptr = np.zeros(34, np.int64)
        np.cumsum(np.bincount(rows, minlength=33), out=indptr[1:])
        indices, values = cols.astype(np.int32), r(rows.size)
        got = clr.sparse_lowrank_linear(x, b, a, indptr, indices, values, bias)
        assert _close(got, cpu.sparse_lowrank_linear(x, b, a, indptr, indices, values, bias), tol), "sparse"
        la, lb = r(4, 5, 70), r(4, 33, 5)
        ids = rng.integers(-1, 4, 37).astype(np.int64)
        sc = rng.uniform(0.5, 2, 4).astype(dt)
        assert _close(clr.multi_lora_linear(x, w, la, lb, ids, sc, bias),
                      cpu.multi_lora_linear(x, w, la, lb, ids, sc, bias), tol), "multi"
        assert _close(clr.multi_lora_linear(x, None, la, lb, ids, sc, None, main_tile=1, shrink_splits=3),
                      cpu.multi_lora_linear(x, None, la, lb, ids, sc, None), tol), "multi delta"


def bench(emit, ceilings: dict, quick: bool, deadline: float, timer) -> None:
    """embkern vs torch peers; rows through emit(), CUDA-event medians from timer(fn)."""
    import torch

    old_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 peers round as fp32, like embkern
    try:
        _bench(torch, emit, ceilings, quick, deadline, timer)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old_tf32


def _bench(torch, emit, ceilings, quick, deadline, timer):
    g = torch.Generator(device="cuda").manual_seed(3)
    hbm = ceilings.get("hbm_read")  # TB/s
    sms, clk = ceilings.get("device_sms"), ceilings.get("device_max_sm_clock")  # count, MHz
    fp32 = sms * 128 * 2 * clk * 1e6 if sms and clk else None  # FLOP/s, derived

    def floor_s(nbytes, flops):
        f = []
        if hbm:
            f.append(nbytes / (hbm * 1e12))
        if fp32:
            f.append(flops / fp32)
        return max(f) if f else None

    def randn(*shape):
        return torch.randn(*shape, device="cuda", generator=g)

    def row(case, impl, sec, reps, nbytes=None, flops=None, **extra):
        fl = floor_s(nbytes, flops) if nbytes is not None else None
        emit(family="lowrank", case=case, impl=impl, status="ok", median_ms=round(sec * 1e3, 4), reps=reps,
             gflops=round(flops / sec / 1e9, 1) if flops else None,
             floor_ms=round(fl * 1e3, 4) if fl else None,
             pct_of_floor=round(100 * fl / sec, 1) if fl else None, **extra)

    def peer(case, impl, fn, ek_sec, ek_out, tol=1e-4, **extra):
        if time.monotonic() > deadline - 15:
            emit(family="lowrank", case=case, impl=impl, status="skip: bench time box")
            return
        try:
            sec, reps = timer(fn)
            ref = fn(0)
            err = float((ek_out.double() - ref.double()).abs().max() / ref.double().abs().max().clamp_min(1e-30))
            row(case, impl, sec, reps, embkern_speedup=round(sec / ek_sec, 3), max_rel_diff=err,
                agree=bool(err < tol), **extra)
        except Exception as e:
            emit(family="lowrank", case=case, impl=impl, status=f"FAIL {type(e).__name__}: {e}")

    def out_of_time(case):
        if time.monotonic() > deadline - 20:
            emit(family="lowrank", case=case, status="skip: bench time box")
            return True
        return False

    z = SIZES
    h, r = z["h"], z["r"]

    # 1. fused LoRA, decode and prefill (one adapter)
    w, a, b, bias = randn(h, h), randn(r, h) * 0.02, randn(h, r) * 0.02, randn(h)
    s = 0.5
    for m in (z["lora_m_quick"] if quick else z["lora_m"]):
        case = f"lora_linear M={m} K=N={h} r={r} fp32"
        if out_of_time(case):
            continue
        xs = [randn(m, h) for _ in range(2)]
        nbytes = 4 * (h * h + 2 * m * h + 2 * r * h)
        flops = 2 * m * h * h + 2 * m * r * 2 * h
        sec, reps = timer(lambda i: clr.lora_linear(xs[i % 2], w, a, b, s, bias))
        row(case, "embkern", sec, reps, nbytes, flops)
        ek = clr.lora_linear(xs[0], w, a, b, s, bias)
        peer(case, "torch x@W.T + s*(x@A.T)@B.T + bias (unfused, cuBLAS)",
             lambda i: xs[i % 2] @ w.T + s * ((xs[i % 2] @ a.T) @ b.T) + bias, sec, ek, nbytes=nbytes, flops=flops)
        peer(case, "torch addmm base + addmm update (2 GEMMs in place)",
             lambda i: torch.addmm(torch.addmm(bias, xs[i % 2], w.T), xs[i % 2] @ a.T, b.T, alpha=s), sec, ek,
             nbytes=nbytes, flops=flops)
        del xs
    del w, a, b, bias
    torch.cuda.empty_cache()

    # 2. multi-adapter (SGMV segments) vs a torch loop over adapters; delta only (weight=None)
    for m, nad in (z["multi_quick"] if quick else z["multi"]):
        case = f"multi_lora_linear delta T={m} adapters={nad} K=N={h} r={r} fp32"
        if out_of_time(case):
            continue
        la, lb = randn(nad, r, h) * 0.02, randn(nad, h, r) * 0.02
        sc = torch.rand(nad, device="cuda", generator=g) + 0.5
        xs = [randn(m, h) for _ in range(2)]
        idss = [torch.randint(-1, nad, (m,), device="cuda", generator=g) for _ in range(2)]
        nbytes = 4 * (2 * m * h + nad * r * 2 * h)
        flops = 2 * m * r * 2 * h
        sec, reps = timer(lambda i: clr.multi_lora_linear(xs[i % 2], None, la, lb, idss[i % 2], sc, None))
        row(case, "embkern", sec, reps, nbytes, flops)
        ek = clr.multi_lora_linear(xs[0], None, la, lb, idss[0], sc, None)

        def torch_loop(i):
            x, ids = xs[i % 2], idss[i % 2]
            y = torch.zeros(m, h, device="cuda")
            for q in range(nad):
                rows = (ids == q).nonzero(as_tuple=True)[0]
                if rows.numel():
                    y.index_add_(0, rows, ((x[rows] @ la[q].T) @ lb[q].T) * sc[q])
            return y

        peer(case, "torch loop over adapters (gather, 2 GEMMs, index_add)", torch_loop, sec, ek,
             nbytes=nbytes, flops=flops, target_speedup=2.0)

        def torch_bgmv(i):
            x, ids = xs[i % 2], idss[i % 2]
            q = ids.clamp_min(0)
            t = torch.bmm(la[q], x[:, :, None])  # (m, r, 1): gathered per-token adapters
            y = torch.bmm(lb[q], t)[:, :, 0] * sc[q][:, None]
            return y * (ids >= 0)[:, None]

        if m * r * h * 8 <= (2 << 30):
            peer(case, "torch gathered bmm (BGMV-style)", torch_bgmv, sec, ek, nbytes=nbytes, flops=flops)
        del xs, la, lb
        torch.cuda.empty_cache()

    # 3. sparse + low-rank (SLTrain L3: r = 128, 3 % support) vs torch low-rank GEMMs + sparse.addmm
    m = z["sparse_m_quick"] if quick else z["sparse_m"]
    rr, dens = z["sparse_r"], z["sparse_density"]
    case = f"sparse_lowrank_linear M={m} K=N={h} r={rr} density={dens} fp32"
    if not out_of_time(case):
        nnz = int(dens * h * h)
        flat = torch.randperm(h * h, device="cuda", generator=g)[:nnz].sort().values
        rows, cols = flat // h, flat % h
        vals = randn(nnz) * 0.02
        indptr = torch.zeros(h + 1, dtype=torch.int64, device="cuda")
        indptr[1:] = torch.cumsum(torch.bincount(rows, minlength=h), 0)
        indices = cols.to(torch.int32)
        bb, aa = randn(h, rr) * 0.02, randn(rr, h) * 0.02
        xs = [randn(m, h) for _ in range(2)]
        nbytes = 4 * (2 * m * h + 2 * rr * h) + 8 * nnz
        flops = 2 * m * rr * 2 * h + 2 * m * nnz
        sec, reps = timer(lambda i: clr.sparse_lowrank_linear(xs[i % 2], bb, aa, indptr, indices, vals, None))
        row(case, "embkern (device CSR, support fixed across calls)", sec, reps, nbytes, flops)
        ek = clr.sparse_lowrank_linear(xs[0], bb, aa, indptr, indices, vals, None)
        S = torch.sparse_csr_tensor(indptr, cols, vals, (h, h))
        peer(case, "torch (x@A.T)@B.T + sparse.addmm (cuSPARSE)",
             lambda i: torch.sparse.addmm(((xs[i % 2] @ aa.T) @ bb.T).T.contiguous(), S, xs[i % 2].T).T, sec, ek,
             nbytes=nbytes, flops=flops)
        peer(case, "torch sparse.mm only (the SpMM part alone)", lambda i: torch.sparse.mm(S, xs[i % 2].T).T,
             sec, ek - clr.lowrank_linear(xs[0], bb, aa, None, None), nbytes=nbytes, flops=2 * m * nnz)
        del xs, S
        torch.cuda.empty_cache()

    # 4. pure low-rank y = ((x V^T) s) U^T, M = 8192, r = 64 (memory-bound if t never hits HBM)
    m, rr = (z["lowrank_m_quick"] if quick else z["lowrank_m"]), z["lowrank_r"]
    case = f"lowrank_linear M={m} K=N={h} r={rr} fp32"
    if not out_of_time(case):
        u, v, sv = randn(h, rr) * 0.1, randn(rr, h) * 0.1, torch.rand(rr, device="cuda", generator=g)
        xs = [randn(m, h) for _ in range(2)]
        nbytes = 4 * (2 * m * h + 2 * rr * h)
        flops = 2 * m * rr * 2 * h
        sec, reps = timer(lambda i: clr.lowrank_linear(xs[i % 2], u, v, sv, None))
        row(case, "embkern", sec, reps, nbytes, flops)
        ek = clr.lowrank_linear(xs[0], u, v, sv, None)
        peer(case, "torch ((x@V.T)*s)@U.T", lambda i: ((xs[i % 2] @ v.T) * sv) @ u.T, sec, ek, nbytes=nbytes,
             flops=flops)
        del xs
        torch.cuda.empty_cache()
