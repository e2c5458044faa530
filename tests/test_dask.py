"""embkern.dask on a distributed.LocalCluster: every function equals its single-process result,
with uneven blocks, one-block arrays and k larger than a block."""
import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import embkern  # noqa: E402
from embkern import binary  # noqa: E402
from embkern.pq import ProductQuantizer  # noqa: E402

ekd = pytest.importorskip("embkern.dask")

UNEVEN = (7, 1, 50, 13, 29)  # rows per block: 100 rows, a 1-row block among them


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as c:
        yield c


@pytest.mark.parametrize("chunks", [UNEVEN, (100,), 16])
def test_pack_signs_and_pq_encode(client, rng, chunks):
    x = rng.standard_normal((100, 37)).astype(np.float32)
    dx = da.from_array(x, chunks=(chunks, 37))
    np.testing.assert_array_equal(ekd.pack_signs(dx).compute(), binary.pack_signs(x))
    np.testing.assert_array_equal(ekd.pack_signs(dx, bitorder="little", threshold=0.5).compute(),
                                  binary.pack_signs(x, bitorder="little", threshold=0.5))
    # column-split blocks are rechunked to whole rows
    split = da.from_array(x, chunks=(chunks, 10))
    np.testing.assert_array_equal(ekd.pack_signs(split).compute(), binary.pack_signs(x))
    pq = ProductQuantizer(36, 4, 4).fit(rng.standard_normal((300, 36)).astype(np.float32), iterations=3)
    x36 = x[:, :36].copy()
    np.testing.assert_array_equal(ekd.pq_encode(pq, da.from_array(x36, chunks=(chunks, 36))).compute(),
                                  pq.encode(x36))


@pytest.mark.parametrize("chunks", [UNEVEN, (100,), 3])
@pytest.mark.parametrize("k", [1, 5, 40])  # 40 > most blocks
def test_hamming_topk_sharded_equals_single(client, rng, chunks, k):
    db = rng.integers(0, 256, (100, 4), dtype=np.uint8)
    db[60:70] = db[3]  # many ties across blocks
    q = np.concatenate([db[3:4], rng.integers(0, 256, (6, 4), dtype=np.uint8)])
    d, i = ekd.hamming_topk(q, da.from_array(db, chunks=(chunks, 4)), k)
    ed, ei = binary.hamming_topk(q, db, k)
    assert d.dtype == np.int32 and i.dtype == np.int64
    np.testing.assert_array_equal(d, ed)
    np.testing.assert_array_equal(i, ei)


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("chunks", [UNEVEN, (100,)])
def test_pq_search_sharded_equals_single(client, rng, metric, chunks):
    x = rng.standard_normal((400, 16)).astype(np.float32)
    pq = ProductQuantizer(16, 4, 8, metric=metric).fit(x, iterations=2)
    codes = pq.encode(x[:100])
    codes[50:60] = codes[0]  # ties
    q = x[300:305]
    for k in (1, 10, 60):
        d, i = ekd.pq_search(pq, q, da.from_array(codes, chunks=(chunks, codes.shape[1])), k)
        ed, ei = pq.search(q, codes, k)
        np.testing.assert_array_equal(d, ed)
        np.testing.assert_array_equal(i, ei)


def test_project_equals_single(client, rng):
    projection = pytest.importorskip("embkern.projection")
    x = rng.standard_normal((100, 300)).astype(np.float32)
    srp = projection.SparseRandomProjection(24, seed=5).fit(x)
    for chunks in (UNEVEN, (100,)):
        got = ekd.project(srp, da.from_array(x, chunks=(chunks, 300))).compute()
        np.testing.assert_array_equal(got, srp.transform(x))


@pytest.mark.parametrize("side", ["documents", "queries"])
def test_fde_encoders_never_split_clouds(client, rng, side):
    fde = pytest.importorskip("embkern.fde")
    lengths = np.array([5, 0, 1, 17, 3, 9, 2, 30, 1, 12], np.int64)  # includes an empty cloud
    pts = rng.standard_normal((int(lengths.sum()), 16)).astype(np.float32)
    cfg = fde.FDEConfig(16, num_repetitions=3, num_simhash_projections=2, seed=7,
                        fill_empty_partitions=(side == "documents"))
    single = getattr(fde, f"encode_{side}")(pts, cfg, lengths=lengths)
    for chunks in ((7, 1, 50, 22), (80,), 4):  # boundaries fall inside clouds
        enc = getattr(ekd, f"encode_{side}")(da.from_array(pts, chunks=(chunks, 16)), lengths, cfg)
        assert enc.shape == single.shape
        np.testing.assert_array_equal(enc.compute(), single)


def test_worker_threads_follow_worker_resources(client):
    # one task thread per worker and no declared cores: one kernel thread per task
    assert client.submit(ekd.worker_threads, pure=False).result() == 1
    assert ekd.worker_threads() == embkern.get_num_threads()  # outside a worker


def test_bad_input(client, rng):
    db = rng.integers(0, 256, (20, 4), dtype=np.uint8)
    with pytest.raises(TypeError, match="dask"):
        ekd.pack_signs(np.zeros((3, 8), np.float32))
    with pytest.raises(ValueError, match="k"):
        ekd.hamming_topk(db[:2], da.from_array(db, chunks=5), 21)
    with pytest.raises(ValueError, match="same code shape"):
        ekd.hamming_topk(db[:2, :3], da.from_array(db, chunks=5), 2)
    with pytest.raises(TypeError, match="uint8"):
        ekd.hamming_topk(db[:2], da.from_array(db.astype(np.int32), chunks=5), 2)
    pq = ProductQuantizer(16, 4, 8)
    with pytest.raises(RuntimeError, match="fit|train"):
        ekd.pq_encode(pq, da.zeros((10, 16), np.float32, chunks=5))
