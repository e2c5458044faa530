"""GPU check cases of the PQ family (loaded by bench/gpu_check.py): smoke() and bench()."""
import time

import numpy as np

from embkern._cuda_ops import pq as cpq


def _same(a, b, what):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape, f"{what}: {a.dtype}{a.shape} vs {b.dtype}{b.shape}"
    if a.dtype.kind == "f":
        a, b = a.view(np.uint32), b.view(np.uint32)
    assert np.array_equal(a, b), f"{what}: differs from the CPU backend"


def smoke() -> None:
    """Every PQ kernel once on host (numpy) inputs against the CPU backend (bit for bit); tiny."""
    from embkern import _core

    cpu = _core.pq
    rng = np.random.default_rng(3)
    for dim, m, nbits in ((32, 8, 8), (30, 5, 4)):
        cent = rng.standard_normal((m, 1 << nbits, dim // m)).astype(np.float32)
        x = rng.standard_normal((301, dim)).astype(np.float32)
        codes = cpu.encode(x, cent, nbits)
        _same(cpq.encode(x, cent, nbits), codes, f"encode m={m}")
        _same(cpq.decode(codes, cent, nbits), cpu.decode(codes, cent, nbits), f"decode m={m}")
        lut = cpu.distance_tables(x[:7], cent, nbits, False)
        _same(cpq.distance_tables(x[:7], cent, nbits, False), lut, f"distance_tables m={m}")
        _same(cpq.adc_distances(lut, codes), cpu.adc_distances(lut, codes), f"adc_distances m={m}")
        for k, launch in ((5, {}), (301, {"path": 2, "run": 512}), (9, {"path": 1, "partitions": 3})):
            for got, want in zip(cpq.adc_topk(lut, codes, k, False, **launch), cpu.adc_topk(lut, codes, k, False)):
                _same(got, want, f"adc_topk m={m} k={k} {launch}")
        init = np.stack([x[rng.choice(301, 1 << nbits, replace=False), s * (dim // m):(s + 1) * (dim // m)]
                         for s in range(m)])
        _same(cpq.train(x, init, nbits, 2), cpu.train(x, init, nbits, 2), f"train m={m}")
        if nbits == 4:
            packed = cpu.pack_fastscan(codes, m)
            _same(cpq.pack_fastscan(codes, m), packed, "pack_fastscan")
            _same(cpq.unpack_fastscan(packed, 301, m), codes, "unpack_fastscan")
            for k, launch in ((4, {}), (200, {"path": 2, "run": 512})):
                for got, want in zip(cpq.fastscan_topk(lut, packed, 301, m, k, True, **launch),
                                     cpu.fastscan_topk(lut, packed, 301, m, k, True)):
                    _same(got, want, f"fastscan_topk k={k}")
            _, cand = cpu.fastscan_topk(lut, packed, 301, m, 40, False)
            d, i = cpq.fastscan_rerank(lut, packed, 301, m, cand, 5, False)
            exact = cpu.adc_distances(lut, codes)
            rows = np.arange(len(lut))[:, None]
            order = np.lexsort((cand, exact[rows, cand]), axis=1)[:, :5]
            _same(i, np.take_along_axis(cand, order, 1), "fastscan_rerank ids")
            _same(d, exact[rows, i], "fastscan_rerank distances")


def bench(emit, ceilings: dict, quick: bool, deadline: float, timer) -> None:
    """ADC top-k (8-bit) and fast-scan top-k (4-bit) vs a torch gather + sum + topk peer, encode and
    train; % of the shared-memory LUT-lookup floor (and the HBM floor of one code pass)."""
    import torch

    g = torch.Generator(device="cuda").manual_seed(1)
    n_db = 1_000_000 if quick else 10_000_000
    k = 10
    read_bw = ceilings.get("hbm_read")  # TB/s

    def floor_s(nq, m, ksub, code_bytes):
        f = []
        rate = ceilings.get("smem_lut_K256_M32" if ksub == 256 else "smem_lut_K16_M32")  # lookups/s, whole GPU
        if rate:
            f.append(nq * n_db * m / rate)
        if read_bw:
            f.append(n_db * code_bytes / (read_bw * 1e12))
        return max(f) if f else None

    def record(case, impl, sec, reps, fl=None, extra=None):
        emit(family="pq", case=case, impl=impl, status="ok", median_ms=round(sec * 1e3, 4), reps=reps,
             codes_per_s=n_db / sec, floor_ms=round(fl * 1e3, 4) if fl else None,
             pct_of_floor=round(100 * fl / sec, 1) if fl else None, **(extra or {}))

    def torch_adc_topk(lut, idx, kk):
        """peer: per sub-quantizer gather of table entries, running sum, topk (database chunks)."""
        nq, m, ksub = lut.shape
        chunk = max(1, min(idx.shape[0], (512 << 20) // (4 * nq)))
        vals, ids = [], []
        for c0 in range(0, idx.shape[0], chunk):
            part = idx[c0:c0 + chunk]
            acc = torch.zeros(nq, part.shape[0], device="cuda")
            for s in range(m):
                acc += lut[:, s, :].index_select(1, part[:, s])
            v, i = torch.topk(acc, min(kk, part.shape[0]), dim=1, largest=False, sorted=True)
            vals.append(v)
            ids.append(i + c0)
        v = torch.cat(vals, 1)
        best = torch.topk(v, kk, dim=1, largest=False, sorted=True)
        return best.values, torch.gather(torch.cat(ids, 1), 1, best.indices)

    # ---- 8-bit ADC top-k ----------------------------------------------------------------------
    for m in ((32,) if quick else (32, 64)):
        if time.monotonic() > deadline - 30:
            emit(family="pq", case=f"adc_topk m={m}", status="skip: bench time box")
            continue
        dbs = [torch.randint(0, 256, (n_db, m), device="cuda", dtype=torch.uint8, generator=g) for _ in range(2)]
        idx = None
        for nq in (1, 100):
            if time.monotonic() > deadline - 30:
                emit(family="pq", case=f"adc_topk m={m} q={nq}", status="skip: bench time box")
                continue
            luts = [torch.rand(nq, m, 256, device="cuda", generator=g) for _ in range(2)]
            case = f"adc_topk 8-bit q={nq} n={n_db} m={m} k={k}"
            fl = floor_s(nq, m, 256, m)
            sec, reps = timer(lambda i: cpq.adc_topk(luts[i % 2], dbs[i % 2], k, False))
            ek_d, _ = cpq.adc_topk(luts[0], dbs[0], k, False)
            record(case, "embkern", sec, reps, fl)
            if time.monotonic() > deadline - 30:
                continue
            try:
                if idx is None:
                    idx = [d.long() for d in dbs]
                sec, reps = timer(lambda i: torch_adc_topk(luts[i % 2], idx[i % 2], k))
                tv, _ = torch_adc_topk(luts[0], idx[0], k)
                record(case, "torch gather+sum+topk", sec, reps, fl,
                       {"distances_agree": bool(torch.equal(tv, ek_d))})
            except Exception as e:
                emit(family="pq", case=case, impl="torch gather+sum+topk", status=f"FAIL {type(e).__name__}: {e}")
            torch.cuda.empty_cache()
        del dbs, idx
        torch.cuda.empty_cache()

    # ---- 4-bit fast scan top-k ----------------------------------------------------------------
    m = 64
    if time.monotonic() < deadline - 30:
        flats = [torch.randint(0, 256, (n_db, m // 2), device="cuda", dtype=torch.uint8, generator=g)
                 for _ in range(2)]
        packs = [cpq.pack_fastscan(f, m) for f in flats]
        idx = None
        for nq in (1, 100):
            if time.monotonic() > deadline - 30:
                emit(family="pq", case=f"fastscan_topk q={nq}", status="skip: bench time box")
                continue
            luts = [torch.rand(nq, m, 16, device="cuda", generator=g) for _ in range(2)]
            case = f"fastscan_topk 4-bit q={nq} n={n_db} m={m} k={k}"
            fl = floor_s(nq, m, 16, m // 2)
            sec, reps = timer(lambda i: cpq.fastscan_topk(luts[i % 2], packs[i % 2], n_db, m, k, False))
            record(case, "embkern", sec, reps, fl)
            if time.monotonic() > deadline - 30:
                continue
            try:
                if idx is None:  # unpacked 4-bit indices (n, m): the peer's input
                    idx = [torch.stack([f & 15, f >> 4], 2).reshape(n_db, m).long() for f in flats]
                sec, reps = timer(lambda i: torch_adc_topk(luts[i % 2], idx[i % 2], k))
                record(case, "torch gather+sum+topk (float)", sec, reps, fl, {"note": "exact float ADC"})
            except Exception as e:
                emit(family="pq", case=case, impl="torch gather+sum+topk (float)",
                     status=f"FAIL {type(e).__name__}: {e}")
            torch.cuda.empty_cache()
        del flats, packs, idx
        torch.cuda.empty_cache()

    # ---- encode and train -------------------------------------------------------------------
    if time.monotonic() < deadline - 30:
        n, dim, m = (200_000 if quick else 1_000_000), 128, 16
        xs = [torch.randn(n, dim, device="cuda", generator=g) for _ in range(2)]
        cent = torch.randn(m, 256, dim // m, device="cuda", generator=g)
        sec, reps = timer(lambda i: cpq.encode(xs[i % 2], cent, 8))
        emit(family="pq", case=f"encode n={n} dim={dim} m={m} 8-bit", impl="embkern", status="ok",
             median_ms=round(sec * 1e3, 4), reps=reps, vectors_per_s=n / sec)
        try:
            def torch_encode(i):
                x = xs[i % 2].view(n, m, dim // m).transpose(0, 1)  # (m, n, dsub)
                return torch.cdist(x, cent).argmin(-1)

            sec, reps = timer(torch_encode)
            emit(family="pq", case=f"encode n={n} dim={dim} m={m} 8-bit", impl="torch cdist+argmin", status="ok",
                 median_ms=round(sec * 1e3, 4), reps=reps, vectors_per_s=n / sec)
        except Exception as e:
            emit(family="pq", case="encode", impl="torch cdist+argmin", status=f"FAIL {type(e).__name__}: {e}")
        del xs
        torch.cuda.empty_cache()
    if time.monotonic() < deadline - 30:
        n, dim, m = 65536, 128, 16
        x = torch.randn(n, dim, device="cuda", generator=g)
        init = x[:256].reshape(256, m, dim // m).transpose(0, 1).contiguous()
        sec, reps = timer(lambda i: cpq.train(x, init, 8, 10))
        emit(family="pq", case=f"train n={n} dim={dim} m={m} 8-bit 10 iterations", impl="embkern", status="ok",
             median_ms=round(sec * 1e3, 4), reps=reps)
