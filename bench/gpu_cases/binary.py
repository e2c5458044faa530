"""GPU check cases of the binary family (loaded by bench/gpu_check.py): smoke() and bench()."""
import time

import numpy as np

from embkern._cuda_ops import binary as cb


def smoke() -> None:
    """A few kernel calls on host (numpy) inputs against numpy references; tiny and fast."""
    rng = np.random.default_rng(7)
    pop = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(1).astype(np.int32)
    x = rng.standard_normal((37, 77)).astype(np.float32)
    got = cb.pack_signs_f32(x, 0.0, False)
    assert np.array_equal(got, np.packbits(x > 0, axis=-1)), "pack_signs_f32"
    for nq, nb, cs, k in ((3, 101, 16, 5), (5, 1000, 33, 64), (2, 300, 128, 1)):
        q = rng.integers(0, 256, (nq, cs), dtype=np.uint8)
        db = rng.integers(0, 256, (nb, cs), dtype=np.uint8)
        ref = pop[q[:, None, :] ^ db[None, :, :]].sum(-1, dtype=np.int32)
        assert np.array_equal(cb.hamming_distance(q, db), ref), f"hamming_distance {nq}x{nb}x{cs}"
        d, i = cb.hamming_topk(q, db, k)
        idx = np.argsort(ref, axis=1, kind="stable")[:, :k]
        assert np.array_equal(d, np.take_along_axis(ref, idx, 1)), f"hamming_topk distances {nq}x{nb}x{cs}"
        assert np.array_equal(i, idx), f"hamming_topk indices {nq}x{nb}x{cs}"
    _smoke_more(rng)


def _same_bits(a, b) -> bool:
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return a.shape == b.shape and bool((a.view(np.uint32) == b.view(np.uint32)).all())


def _smoke_more(rng) -> None:
    """hamming_range, asymmetric_scores and multibit_* against the CPU backend (exact / bit-identical)."""
    from embkern import _core

    cpu = _core.binary
    for nq, nb, cs, radius in ((3, 101, 16, 60), (9, 700, 33, 120), (2, 300, 4, 32)):
        q = rng.integers(0, 256, (nq, cs), dtype=np.uint8)
        db = rng.integers(0, 256, (nb, cs), dtype=np.uint8)
        got, want = cb.hamming_range(q, db, radius), cpu.hamming_range(q, db, radius)
        for g, w, what in zip(got, want, ("lims", "distances", "indices")):
            assert np.array_equal(g, w), f"hamming_range {what} {nq}x{nb}x{cs} r={radius}"
    for d in (13, 256, 300):
        q = rng.standard_normal((5, d)).astype(np.float32)
        codes = rng.integers(0, 256, (77, (d + 7) // 8), dtype=np.uint8)
        for little in (False, True):
            assert _same_bits(cb.asymmetric_scores(q, codes, little), cpu.asymmetric_scores(q, codes, little)), \
                f"asymmetric_scores d={d} little={little}"
    for planes, dim in ((2, 64), (3, 37)):
        q = np.packbits(rng.integers(0, 2, (4, planes, dim)) > 0, axis=-1)
        db = np.packbits(rng.integers(0, 2, (400, planes, dim)) > 0, axis=-1)
        w = rng.random(planes)
        assert _same_bits(cb.multibit_scores(q, db, dim, w), cpu.multibit_scores(q, db, dim, w)), \
            f"multibit_scores planes={planes} dim={dim}"
        for k in (1, 17, 400):
            s, i = cb.multibit_topk(q, db, k, dim, w)
            ws, wi = cpu.multibit_topk(q, db, k, dim, w)
            assert _same_bits(s, ws) and np.array_equal(i, wi), f"multibit_topk planes={planes} dim={dim} k={k}"


def _torch_popcount64(x):
    """SWAR popcount of int64 words (torch has no popcount op); arithmetic shifts are masked off."""
    x = x - ((x >> 1) & 0x5555555555555555)
    x = (x & 0x3333333333333333) + ((x >> 2) & 0x3333333333333333)
    x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0F
    return (x * 0x0101010101010101) >> 56


def bench(emit, ceilings: dict, quick: bool, deadline: float, timer) -> None:
    """embkern vs torch / CuPy peers; rows through emit(), CUDA-event medians from timer(fn)."""
    import torch

    g = torch.Generator(device="cuda").manual_seed(1)
    n_db = 100_000 if quick else 1_000_000
    cs = 128  # 1024-bit codes
    k = 10
    # two DB sets: 2 x 128 MB, so repeated calls don't run from the 60 MB L2 alone
    dbs = [torch.randint(0, 256, (n_db, cs), device="cuda", dtype=torch.uint8, generator=g) for _ in range(2)]
    words_s = ceilings.get("popc_words")  # 32-bit xor+popc+add per second, whole GPU
    read_bw = ceilings.get("hbm_read")  # TB/s

    def floor_s(nq):
        f = []
        if words_s:
            f.append(nq * n_db * cs / 4 / words_s)
        if read_bw:
            f.append(n_db * cs / (read_bw * 1e12))
        return max(f) if f else None

    def record(case, impl, sec, reps, nq, extra=None):
        fl = floor_s(nq)
        emit(family="binary", case=case, impl=impl, status="ok", median_ms=round(sec * 1e3, 4), reps=reps,
             pairs_per_s=nq * n_db / sec, floor_ms=round(fl * 1e3, 4) if fl else None,
             pct_of_floor=round(100 * fl / sec, 1) if fl else None, **(extra or {}))

    db64 = [d.view(torch.int64) for d in dbs]
    for nq in ((1, 100) if quick else (1, 100, 1000)):
        if time.monotonic() > deadline - 20:
            emit(family="binary", case=f"topk q={nq}", status="skip: bench time box")
            continue
        qs = [torch.randint(0, 256, (nq, cs), device="cuda", dtype=torch.uint8, generator=g) for _ in range(2)]
        case = f"hamming_topk q={nq} n={n_db} bits={cs * 8} k={k}"
        sec, reps = timer(lambda i: cb.hamming_topk(qs[i % 2], dbs[i % 2], k))
        ek_d, ek_i = cb.hamming_topk(qs[0], dbs[0], k)
        record(case, "embkern", sec, reps, nq)

        q64 = [q.view(torch.int64) for q in qs]
        chunk = max(1, (2 << 30) // (n_db * cs))  # queries per step: <= 2 GB of int64 temporaries

        def torch_topk(i):
            q, d = q64[i % 2], db64[i % 2]
            outs = []
            for s in range(0, nq, chunk):
                x = torch.bitwise_xor(q[s:s + chunk, None, :], d[None, :, :])
                dist = _torch_popcount64(x).sum(-1)
                outs.append(torch.topk(dist, k, dim=1, largest=False, sorted=True))
            return outs

        if time.monotonic() < deadline - 20:
            try:
                sec, reps = timer(torch_topk)
                ref = torch.cat([o.values for o in torch_topk(0)]).to(torch.int32)
                agree = bool(torch.equal(ref, ek_d))
                record(case, "torch xor+SWAR popcount+topk", sec, reps, nq, {"distances_agree": agree})
            except Exception as e:
                emit(family="binary", case=case, impl="torch xor+SWAR popcount+topk",
                     status=f"FAIL {type(e).__name__}: {e}")
            torch.cuda.empty_cache()
        try:
            import cupy
        except ImportError:
            cupy = None
        if cupy is not None and hasattr(cupy, "bitwise_count") and time.monotonic() < deadline - 20:

            cq = [cupy.from_dlpack(q) for q in q64]
            cd = [cupy.from_dlpack(d) for d in db64]
            cchunk = max(1, (1 << 30) // (n_db * cs))

            def cupy_topk(i):
                q, d = cq[i % 2], cd[i % 2]
                outs = []
                for s in range(0, nq, cchunk):
                    dist = cupy.bitwise_count(q[s:s + cchunk, None, :] ^ d[None, :, :]).sum(-1, dtype=cupy.int32)
                    outs.append(torch.topk(torch.from_dlpack(dist), k, dim=1, largest=False, sorted=True))
                return outs

            try:
                sec, reps = timer(cupy_topk)
                record(case, "cupy bitwise_count + torch.topk", sec, reps, nq)
            except Exception as e:
                emit(family="binary", case=case, impl="cupy bitwise_count + torch.topk",
                     status=f"FAIL {type(e).__name__}: {e}")
            cupy.get_default_memory_pool().free_all_blocks()
        if nq >= 100 and time.monotonic() < deadline - 20:
            try:
                shifts = torch.arange(7, -1, -1, device="cuda", dtype=torch.uint8)

                def pm1(codes):  # bits -> +-1 int8, big-endian bit order within bytes
                    bits = (codes[:, :, None] >> shifts) & 1
                    return (bits.to(torch.int8) * 2 - 1).reshape(codes.shape[0], -1)

                dpm = [pm1(d) for d in dbs]
                qpm = [pm1(q) for q in qs]
                nbits = cs * 8

                def intmm_topk(i):
                    dot = torch._int_mm(qpm[i % 2], dpm[i % 2].t())
                    return torch.topk(dot, k, dim=1, largest=True, sorted=True)

                sec, reps = timer(intmm_topk)
                ham = ((nbits - intmm_topk(0).values) // 2).to(torch.int32)
                record(case, "torch _int_mm(+-1 int8) + topk", sec, reps, nq,
                       {"distances_agree": bool(torch.equal(ham, ek_d)), "note": "bits pre-unpacked"})
                del dpm, qpm
            except Exception as e:
                emit(family="binary", case=case, impl="torch _int_mm(+-1 int8) + topk",
                     status=f"FAIL {type(e).__name__}: {e}")
        torch.cuda.empty_cache()

    _bench_range(emit, ceilings, quick, deadline, timer, torch, dbs, g)
    torch.cuda.empty_cache()
    _bench_multibit(emit, ceilings, quick, deadline, timer, torch, g)
    torch.cuda.empty_cache()

    # hamming_distance (full matrix) and pack_signs, one size each
    if time.monotonic() < deadline - 20:
        nq = 100
        qs = [torch.randint(0, 256, (nq, cs), device="cuda", dtype=torch.uint8, generator=g) for _ in range(2)]
        sec, reps = timer(lambda i: cb.hamming_distance(qs[i % 2], dbs[i % 2]))
        record(f"hamming_distance q={nq} n={n_db} bits={cs * 8}", "embkern", sec, reps, nq,
               {"out_GB": nq * n_db * 4 / 1e9})
    if time.monotonic() < deadline - 20:
        del dbs, db64
        torch.cuda.empty_cache()
        n, d = (100_000 if quick else 1_000_000), 1024
        xs = [torch.randn(n, d, device="cuda", generator=g) for _ in range(2)]
        weights = (2 ** torch.arange(7, -1, -1, device="cuda", dtype=torch.int32)).to(torch.uint8)
        sec, reps = timer(lambda i: cb.pack_signs_f32(xs[i % 2], 0.0, False))
        bw = n * d * 4 / sec / 1e12
        emit(family="binary", case=f"pack_signs_f32 n={n} d={d}", impl="embkern", status="ok",
             median_ms=round(sec * 1e3, 4), reps=reps, read_TBps=round(bw, 3),
             pct_of_floor=round(100 * bw / read_bw, 1) if read_bw else None)
        sec, reps = timer(lambda i: ((xs[i % 2] > 0).view(n, d // 8, 8).to(torch.uint8) * weights).sum(-1, dtype=torch.uint8))
        bw = n * d * 4 / sec / 1e12
        emit(family="binary", case=f"pack_signs_f32 n={n} d={d}", impl="torch compare+weights+sum",
             status="ok", median_ms=round(sec * 1e3, 4), reps=reps, read_TBps=round(bw, 3),
             pct_of_floor=round(100 * bw / read_bw, 1) if read_bw else None)


def _pm1_bits(torch, codes, dtype):
    """uint8 codes (n, c) -> +-1 values (n, 8c) of `dtype`, big-endian bit order within bytes."""
    shifts = torch.arange(7, -1, -1, device=codes.device, dtype=torch.uint8)
    bits = (codes[..., None] >> shifts) & 1
    return (bits.to(dtype) * 2 - 1).reshape(*codes.shape[:-1], -1)


def _torch_range(torch, qpm, dpm, nq, radius):
    """The peer's range search on +-1 int8 rows (queries padded to >= 17 rows for _int_mm):
    (lims, distances, indices) ascending by (distance, index) per query, like embkern's."""
    n_db, bits = dpm.shape
    thr = bits - 2 * radius  # distance <= radius  <=>  dot >= bits - 2 radius
    qchunk = max(17, (1 << 31) // (4 * n_db))  # int32 dot products per step: <= 2 GB
    keys = []
    for s in range(0, nq, qchunk):
        rows = qpm[s:s + qchunk]
        if rows.shape[0] < 17:  # _int_mm needs more than 16 rows
            rows = torch.cat([rows, rows.new_ones(17 - rows.shape[0], bits)])
        dot = torch._int_mm(rows, dpm.t())[: min(qchunk, nq - s)]
        r, c = torch.nonzero(dot >= thr, as_tuple=True)
        dist = ((bits - dot[r, c]) // 2).to(torch.int64)
        keys.append(((r + s).to(torch.int64) * (bits + 1) + dist) * n_db + c)
    key = torch.sort(torch.cat(keys)).values
    counts = torch.bincount(key // ((bits + 1) * n_db), minlength=nq)
    lims = torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])
    return lims, ((key // n_db) % (bits + 1)).to(torch.int32), key % n_db


def _bench_range(emit, ceilings, quick, deadline, timer, torch, dbs, g) -> None:
    """hamming_range: embkern (count, scan, fill) vs torch _int_mm on +-1 int8 + threshold + nonzero + sort."""
    n_db, cs = dbs[0].shape
    bits = 8 * cs
    radius = bits // 2 - 52 if bits == 1024 else bits // 2 - bits // 20  # ~0.05% of random codes
    words_s = ceilings.get("popc_words")
    read_bw = ceilings.get("hbm_read")
    for nq in ((1, 100) if quick else (1, 100, 1000)):
        case = f"hamming_range q={nq} n={n_db} bits={bits} r={radius}"
        if time.monotonic() > deadline - 25:
            emit(family="binary", case=case, status="skip: bench time box")
            continue
        qs = [torch.randint(0, 256, (nq, cs), device="cuda", dtype=torch.uint8, generator=g) for _ in range(2)]
        floors = []
        if words_s:
            floors.append(nq * n_db * cs / 4 / words_s)
        if read_bw:
            floors.append(n_db * cs / (read_bw * 1e12))
        floor = max(floors) if floors else None
        try:
            sec, reps = timer(lambda i: cb.hamming_range(qs[i % 2], dbs[i % 2], radius))
            lims, dist, idx = cb.hamming_range(qs[0], dbs[0], radius)
            hits = int(lims[-1])
            emit(family="binary", case=case, impl="embkern", status="ok", median_ms=round(sec * 1e3, 4),
                 reps=reps, hits=hits, floor_ms=round(floor * 1e3, 4) if floor else None,
                 pct_of_floor=round(100 * floor / sec, 1) if floor else None)
        except Exception as e:
            emit(family="binary", case=case, impl="embkern", status=f"FAIL {type(e).__name__}: {e}")
            continue
        if time.monotonic() > deadline - 20:
            continue
        try:
            dpm = [_pm1_bits(torch, d, torch.int8) for d in dbs]
            qpm = [_pm1_bits(torch, q, torch.int8) for q in qs]

            def torch_range(i):
                return _torch_range(torch, qpm[i % 2], dpm[i % 2], nq, radius)

            sec, reps = timer(torch_range)
            tl, td, ti = torch_range(0)
            agree = bool(torch.equal(tl, lims) and torch.equal(td, dist) and torch.equal(ti, idx))
            emit(family="binary", case=case, impl="torch _int_mm(+-1 int8)+nonzero+sort", status="ok",
                 median_ms=round(sec * 1e3, 4), reps=reps, results_agree=agree, note="bits pre-unpacked",
                 floor_ms=round(floor * 1e3, 4) if floor else None,
                 pct_of_floor=round(100 * floor / sec, 1) if floor else None)
            del dpm, qpm
        except Exception as e:
            emit(family="binary", case=case, impl="torch _int_mm(+-1 int8)+nonzero+sort",
                 status=f"FAIL {type(e).__name__}: {e}")
        torch.cuda.empty_cache()


def _composite(torch, codes, w):
    """(n, planes, nbytes) codes -> bf16 (n, 8 nbytes) composite vectors sum_t w_t (+-1 plane t)
    (exact in bf16 for w = (1, 1/2): values +-1.5, +-0.5)."""
    wt = torch.tensor(w, device=codes.device, dtype=torch.bfloat16)
    return (_pm1_bits(torch, codes, torch.bfloat16) * wt[:, None]).sum(1)


def _bench_multibit(emit, ceilings, quick, deadline, timer, torch, g) -> None:
    """multibit_topk (BEBR u=1: 2 planes x 512 dims) vs torch bf16 matmul of the composite vectors + topk."""
    n_db = 100_000 if quick else 1_000_000
    planes, dim, k = 2, 512, 10
    nbytes = dim // 8
    w = np.array([1.0, 0.5])
    dbs = [torch.randint(0, 256, (n_db, planes, nbytes), device="cuda", dtype=torch.uint8, generator=g)
           for _ in range(2)]
    words_s = ceilings.get("popc_words")
    read_bw = ceilings.get("hbm_read")
    for nq in ((1, 100) if quick else (1, 100, 1000)):
        case = f"multibit_topk q={nq} n={n_db} planes={planes} dim={dim} k={k}"
        if time.monotonic() > deadline - 25:
            emit(family="binary", case=case, status="skip: bench time box")
            continue
        qs = [torch.randint(0, 256, (nq, planes, nbytes), device="cuda", dtype=torch.uint8, generator=g)
              for _ in range(2)]
        floors = []
        if words_s:
            floors.append(nq * n_db * planes * planes * nbytes / 4 / words_s)
        if read_bw:
            floors.append(n_db * planes * nbytes / (read_bw * 1e12))
        floor = max(floors) if floors else None
        try:
            sec, reps = timer(lambda i: cb.multibit_topk(qs[i % 2], dbs[i % 2], k, dim, w))
            es, ei = cb.multibit_topk(qs[0], dbs[0], k, dim, w)
            emit(family="binary", case=case, impl="embkern", status="ok", median_ms=round(sec * 1e3, 4),
                 reps=reps, floor_ms=round(floor * 1e3, 4) if floor else None,
                 pct_of_floor=round(100 * floor / sec, 1) if floor else None)
        except Exception as e:
            emit(family="binary", case=case, impl="embkern", status=f"FAIL {type(e).__name__}: {e}")
            continue
        if time.monotonic() > deadline - 20:
            continue
        try:
            dvec = [_composite(torch, d, w) for d in dbs]
            qvec = [_composite(torch, q, w) for q in qs]

            def torch_topk(i):
                return torch.topk(qvec[i % 2] @ dvec[i % 2].t(), k, dim=1, largest=True, sorted=True)

            sec, reps = timer(torch_topk)
            # the peer's scores are the exact ones rounded to bf16 (its matmul output type)
            agree = bool(torch.equal(torch_topk(0).values.float(), es.to(torch.bfloat16).float()))
            emit(family="binary", case=case, impl="torch bf16 matmul(composite)+topk", status="ok",
                 median_ms=round(sec * 1e3, 4), reps=reps, scores_agree=agree,
                 note="composite vectors pre-built", floor_ms=round(floor * 1e3, 4) if floor else None,
                 pct_of_floor=round(100 * floor / sec, 1) if floor else None)
            del dvec, qvec
        except Exception as e:
            emit(family="binary", case=case, impl="torch bf16 matmul(composite)+topk",
                 status=f"FAIL {type(e).__name__}: {e}")
        torch.cuda.empty_cache()
