// Python bindings of the binary-code CUDA kernels (embkern._cuda.binary): launchers on device
// pointers, and their host emulation (numpy in, numpy out) for tests without a GPU.
#include "cuda/binary/binary_cuda.hpp"
#include "cuda/common/bindings.hpp"

namespace embkern::cuda {

using namespace bind;
namespace ek = embkern::cuda;

namespace {

ek::TopkOptions topk_options(int path, int64_t partitions, int threads, int items_per_thread,
                             int hist_bins, int64_t batch_bytes) {
    ek::TopkOptions o;
    o.path = path;
    o.partitions = partitions;
    if (threads > 0) o.threads = threads;
    if (items_per_thread > 0) o.items_per_thread = items_per_thread;
    if (hist_bins > 0) o.hist_bins = hist_bins;
    if (batch_bytes > 0) o.batch_bytes = batch_bytes;
    return o;
}

template <class T>
py::array_t<uint8_t> emulate_pack_signs(const carray<T>& x, T threshold, bool little, int threads,
                                        int sm_count) {
    require_2d(x, "x");
    const int64_t n = x.shape(0), d = x.shape(1);
    py::array_t<uint8_t> out({n, (d + 7) / 8});
    py::gil_scoped_release nogil;
    if constexpr (sizeof(T) == 4)
        ek::emu::pack_signs_f32(x.data(), n, d, threshold, little, out.mutable_data(), threads, sm_count);
    else
        ek::emu::pack_signs_f64(x.data(), n, d, threshold, little, out.mutable_data(), threads, sm_count);
    return out;
}

ek::RangeOptions range_options(int threads, int items_per_thread, int64_t partitions, int64_t batch_bytes) {
    ek::RangeOptions o;
    if (threads > 0) o.threads = threads;
    if (items_per_thread > 0) o.items_per_thread = items_per_thread;
    o.partitions = partitions;
    if (batch_bytes > 0) o.batch_bytes = batch_bytes;
    return o;
}

ek::AsymOptions asym_options(int threads, int codes_per_thread, int64_t window, int64_t batch_bytes) {
    ek::AsymOptions o;
    if (threads > 0) o.threads = threads;
    if (codes_per_thread > 0) o.codes_per_thread = codes_per_thread;
    if (window > 0) o.window = window;
    if (batch_bytes > 0) o.batch_bytes = batch_bytes;
    return o;
}

ek::MultibitOptions multibit_options(int path, int64_t partitions, int threads, int items_per_thread,
                                     int64_t batch_bytes) {
    ek::MultibitOptions o;
    o.path = path;
    o.partitions = partitions;
    if (threads > 0) o.threads = threads;
    if (items_per_thread > 0) o.items_per_thread = items_per_thread;
    if (batch_bytes > 0) o.batch_bytes = batch_bytes;
    return o;
}

void require_weights(const carray<double>& w, int64_t planes) {
    require(w.ndim() == 1 && w.shape(0) == planes,
            "weights must have one value per plane (" + std::to_string(planes) + ")");
}

void require_multibit(const carray<uint8_t>& q, const carray<uint8_t>& db) {
    require(q.ndim() == 3, "queries must have 3 dimensions, got " + std::to_string(q.ndim()));
    require(db.ndim() == 3, "database must have 3 dimensions, got " + std::to_string(db.ndim()));
    require(q.shape(1) == db.shape(1) && q.shape(2) == db.shape(2),
            "queries and database must have the same planes and bytes per plane");
}

}  // namespace

void bind_binary(py::module_ m) {
    // ---- binary kernels (device pointers) ----------------------------------------------------
    m.def("pack_signs_f32", [](uptr x, int64_t n, int64_t d, float threshold, bool little, uptr out,
                               uptr stream, int device) {
        py::gil_scoped_release nogil;
        ek::pack_signs_f32(in_ptr<float>(x), n, d, threshold, little, out_ptr<uint8_t>(out), stream, device);
    }, py::arg("x"), py::arg("n"), py::arg("d"), py::arg("threshold"), py::arg("little"),
       py::arg("out"), py::arg("stream") = 0, py::arg("device") = -1,
       "out[n, ceil(d/8)] = signs of x[n, d] > threshold, packed");
    m.def("pack_signs_f64", [](uptr x, int64_t n, int64_t d, double threshold, bool little, uptr out,
                               uptr stream, int device) {
        py::gil_scoped_release nogil;
        ek::pack_signs_f64(in_ptr<double>(x), n, d, threshold, little, out_ptr<uint8_t>(out), stream, device);
    }, py::arg("x"), py::arg("n"), py::arg("d"), py::arg("threshold"), py::arg("little"),
       py::arg("out"), py::arg("stream") = 0, py::arg("device") = -1);
    m.def("hamming_distance", [](uptr a, int64_t na, uptr b, int64_t nb, int64_t cs, uptr out,
                                 uptr stream, int device) {
        py::gil_scoped_release nogil;
        ek::hamming_distance(in_ptr<uint8_t>(a), na, in_ptr<uint8_t>(b), nb, cs, out_ptr<int32_t>(out),
                             stream, device);
    }, py::arg("a"), py::arg("na"), py::arg("b"), py::arg("nb"), py::arg("cs"), py::arg("out"),
       py::arg("stream") = 0, py::arg("device") = -1, "out[na, nb] (int32) = all-pairs Hamming distances");
    m.def("hamming_topk", [](uptr q, int64_t nq, uptr db, int64_t nb, int64_t cs, int64_t k,
                             uptr out_d, uptr out_i, uptr stream, int device, int path,
                             int64_t partitions, int threads, int items_per_thread, int hist_bins,
                             int64_t batch_bytes) {
        const ek::TopkOptions o = topk_options(path, partitions, threads, items_per_thread, hist_bins,
                                               batch_bytes);
        py::gil_scoped_release nogil;
        ek::hamming_topk(in_ptr<uint8_t>(q), nq, in_ptr<uint8_t>(db), nb, cs, k,
                         out_ptr<int32_t>(out_d), out_ptr<int64_t>(out_i), stream, device, o);
    }, py::arg("q"), py::arg("nq"), py::arg("db"), py::arg("nb"), py::arg("cs"), py::arg("k"),
       py::arg("out_d"), py::arg("out_i"), py::arg("stream") = 0, py::arg("device") = -1,
       py::arg("path") = 0, py::arg("partitions") = 0, py::arg("threads") = 0,
       py::arg("items_per_thread") = 0, py::arg("hist_bins") = 0, py::arg("batch_bytes") = 0,
       "out_d[nq, k] int32, out_i[nq, k] int64: exact k nearest codes, ascending (distance, index); "
       "path/partitions/threads/items_per_thread/hist_bins/batch_bytes: 0 = default (tests only)");

    m.def("hamming_range", [](uptr q, int64_t nq, uptr db, int64_t nb, int64_t cs, int32_t radius,
                              uptr lims, const py::function& alloc, uptr stream, int device, int threads,
                              int items_per_thread, int64_t partitions, int64_t batch_bytes) {
        const ek::RangeOptions o = range_options(threads, items_per_thread, partitions, batch_bytes);
        // alloc(total) -> (distances pointer, indices pointer), called with the GIL once the number
        // of hits is known.
        const ek::RangeAlloc cb = [&alloc](int64_t total, int32_t** out_d, int64_t** out_i) {
            py::gil_scoped_acquire gil;
            const py::tuple ptrs = alloc(total);
            *out_d = out_ptr<int32_t>(ptrs[0].cast<uptr>());
            *out_i = out_ptr<int64_t>(ptrs[1].cast<uptr>());
        };
        py::gil_scoped_release nogil;
        return ek::hamming_range(in_ptr<uint8_t>(q), nq, in_ptr<uint8_t>(db), nb, cs, radius,
                                 out_ptr<int64_t>(lims), cb, stream, device, o);
    }, py::arg("q"), py::arg("nq"), py::arg("db"), py::arg("nb"), py::arg("cs"), py::arg("radius"),
       py::arg("lims"), py::arg("alloc"), py::arg("stream") = 0, py::arg("device") = -1,
       py::arg("threads") = 0, py::arg("items_per_thread") = 0, py::arg("partitions") = 0,
       py::arg("batch_bytes") = 0,
       "lims[nq + 1] int64 filled; alloc(total) -> (int32 distances ptr, int64 indices ptr) gives the "
       "outputs; returns total. Every code within radius, ascending (distance, index) per query");
    m.def("asymmetric_scores", [](uptr q, int64_t nq, int64_t d, uptr codes, int64_t nb, bool little,
                                  uptr out, uptr stream, int device, int threads, int codes_per_thread,
                                  int64_t window, int64_t batch_bytes) {
        const ek::AsymOptions o = asym_options(threads, codes_per_thread, window, batch_bytes);
        py::gil_scoped_release nogil;
        ek::asymmetric_scores(in_ptr<float>(q), nq, d, in_ptr<uint8_t>(codes), nb, little, out_ptr<float>(out),
                              stream, device, o);
    }, py::arg("q"), py::arg("nq"), py::arg("d"), py::arg("codes"), py::arg("nb"), py::arg("little"),
       py::arg("out"), py::arg("stream") = 0, py::arg("device") = -1, py::arg("threads") = 0,
       py::arg("codes_per_thread") = 0, py::arg("window") = 0, py::arg("batch_bytes") = 0,
       "out[nq, nb] float32 = float queries . (+-1 codes), bit-identical to the CPU backend");
    m.def("multibit_scores", [](uptr q, int64_t nq, uptr db, int64_t nb, int64_t planes, int64_t nbytes,
                                int64_t dim, const carray<double>& weights, uptr out, uptr stream, int device,
                                int threads) {
        require_weights(weights, planes);
        const ek::MultibitOptions o = multibit_options(0, 0, threads, 0, 0);
        py::gil_scoped_release nogil;
        ek::multibit_scores(in_ptr<uint8_t>(q), nq, in_ptr<uint8_t>(db), nb, planes, nbytes, dim, weights.data(),
                            out_ptr<float>(out), stream, device, o);
    }, py::arg("q"), py::arg("nq"), py::arg("db"), py::arg("nb"), py::arg("planes"), py::arg("nbytes"),
       py::arg("dim"), py::arg("weights"), py::arg("out"), py::arg("stream") = 0, py::arg("device") = -1,
       py::arg("threads") = 0, "out[nq, nb] float32 multi-bit scores (weights: host float64)");
    m.def("multibit_topk", [](uptr q, int64_t nq, uptr db, int64_t nb, int64_t planes, int64_t nbytes,
                              int64_t dim, const carray<double>& weights, int64_t k, uptr out_s, uptr out_i,
                              uptr stream, int device, int path, int64_t partitions, int threads,
                              int items_per_thread, int64_t batch_bytes) {
        require_weights(weights, planes);
        const ek::MultibitOptions o = multibit_options(path, partitions, threads, items_per_thread, batch_bytes);
        py::gil_scoped_release nogil;
        ek::multibit_topk(in_ptr<uint8_t>(q), nq, in_ptr<uint8_t>(db), nb, planes, nbytes, dim, weights.data(), k,
                          out_ptr<float>(out_s), out_ptr<int64_t>(out_i), stream, device, o);
    }, py::arg("q"), py::arg("nq"), py::arg("db"), py::arg("nb"), py::arg("planes"), py::arg("nbytes"),
       py::arg("dim"), py::arg("weights"), py::arg("k"), py::arg("out_s"), py::arg("out_i"),
       py::arg("stream") = 0, py::arg("device") = -1, py::arg("path") = 0, py::arg("partitions") = 0,
       py::arg("threads") = 0, py::arg("items_per_thread") = 0, py::arg("batch_bytes") = 0,
       "out_s[nq, k] float32 descending, out_i[nq, k] int64 (ties by smaller index)");

    // ---- host emulation of the same kernels (numpy in, numpy out) ----------------------------
    m.def("_emulate_pack_signs_f32", &emulate_pack_signs<float>, py::arg("x"), py::arg("threshold"),
          py::arg("little"), py::arg("threads") = 64, py::arg("sm_count") = 1);
    m.def("_emulate_pack_signs_f64", &emulate_pack_signs<double>, py::arg("x"), py::arg("threshold"),
          py::arg("little"), py::arg("threads") = 64, py::arg("sm_count") = 1);
    m.def("_emulate_hamming_distance", [](const carray<uint8_t>& a, const carray<uint8_t>& b,
                                          int sm_count) {
        require_2d(a, "a");
        require_2d(b, "b");
        require(a.shape(1) == b.shape(1), "code widths differ");
        py::array_t<int32_t> out({a.shape(0), b.shape(0)});
        py::gil_scoped_release nogil;
        ek::emu::hamming_distance(a.data(), a.shape(0), b.data(), b.shape(0), a.shape(1),
                                  out.mutable_data(), sm_count);
        return out;
    }, py::arg("a"), py::arg("b"), py::arg("sm_count") = 1);
    m.def("_emulate_hamming_topk", [](const carray<uint8_t>& q, const carray<uint8_t>& db, int64_t k,
                                      int path, int64_t partitions, int threads,
                                      int items_per_thread, int hist_bins, int64_t batch_bytes,
                                      int sm_count) {
        require_2d(q, "queries");
        require_2d(db, "database");
        require(q.shape(1) == db.shape(1), "code widths differ");
        const ek::TopkOptions o = topk_options(path, partitions, threads, items_per_thread, hist_bins,
                                               batch_bytes);
        py::array_t<int32_t> d({q.shape(0), static_cast<py::ssize_t>(k > 0 ? k : 0)});
        py::array_t<int64_t> i({q.shape(0), static_cast<py::ssize_t>(k > 0 ? k : 0)});
        {
            py::gil_scoped_release nogil;
            ek::emu::hamming_topk(q.data(), q.shape(0), db.data(), db.shape(0), q.shape(1), k,
                                  d.mutable_data(), i.mutable_data(), o, sm_count);
        }
        return py::make_tuple(d, i);
    }, py::arg("queries"), py::arg("database"), py::arg("k"), py::arg("path") = 0,
       py::arg("partitions") = 0, py::arg("threads") = 32, py::arg("items_per_thread") = 1,
       py::arg("hist_bins") = 0, py::arg("batch_bytes") = 0, py::arg("sm_count") = 1);
    m.def("_emulate_hamming_range", [](const carray<uint8_t>& q, const carray<uint8_t>& db, int32_t radius,
                                       int threads, int items_per_thread, int64_t partitions,
                                       int64_t batch_bytes, int sm_count) {
        require_2d(q, "queries");
        require_2d(db, "database");
        require(q.shape(1) == db.shape(1), "code widths differ");
        const ek::RangeOptions o = range_options(threads, items_per_thread, partitions, batch_bytes);
        py::array_t<int64_t> lims(q.shape(0) + 1);
        py::array_t<int32_t> dist;
        py::array_t<int64_t> idx;
        const ek::RangeAlloc cb = [&](int64_t total, int32_t** out_d, int64_t** out_i) {
            py::gil_scoped_acquire gil;
            dist = py::array_t<int32_t>(static_cast<py::ssize_t>(total));
            idx = py::array_t<int64_t>(static_cast<py::ssize_t>(total));
            *out_d = dist.mutable_data();
            *out_i = idx.mutable_data();
        };
        {
            py::gil_scoped_release nogil;
            ek::emu::hamming_range(q.data(), q.shape(0), db.data(), db.shape(0), q.shape(1), radius,
                                   lims.mutable_data(), cb, o, sm_count);
        }
        return py::make_tuple(lims, dist, idx);
    }, py::arg("queries"), py::arg("database"), py::arg("radius"), py::arg("threads") = 32,
       py::arg("items_per_thread") = 1, py::arg("partitions") = 0, py::arg("batch_bytes") = 0,
       py::arg("sm_count") = 1);
    m.def("_emulate_asymmetric_scores", [](const carray<float>& q, const carray<uint8_t>& codes, bool little,
                                           int threads, int codes_per_thread, int64_t window,
                                           int64_t batch_bytes, int sm_count) {
        require_2d(q, "queries");
        require_2d(codes, "database");
        const int64_t d = q.shape(1);
        require(codes.shape(1) == (d + 7) / 8, "database must have ceil(d/8) bytes per code");
        const ek::AsymOptions o = asym_options(threads, codes_per_thread, window, batch_bytes);
        py::array_t<float> out({q.shape(0), codes.shape(0)});
        py::gil_scoped_release nogil;
        ek::emu::asymmetric_scores(q.data(), q.shape(0), d, codes.data(), codes.shape(0), little,
                                   out.mutable_data(), o, sm_count);
        return out;
    }, py::arg("queries"), py::arg("database"), py::arg("little"), py::arg("threads") = 32,
       py::arg("codes_per_thread") = 0, py::arg("window") = 0, py::arg("batch_bytes") = 0,
       py::arg("sm_count") = 1);
    m.def("_emulate_multibit_scores", [](const carray<uint8_t>& q, const carray<uint8_t>& db, int64_t dim,
                                         const carray<double>& weights, int threads, int sm_count) {
        require_multibit(q, db);
        require_weights(weights, q.shape(1));
        const ek::MultibitOptions o = multibit_options(0, 0, threads, 0, 0);
        py::array_t<float> out({q.shape(0), db.shape(0)});
        py::gil_scoped_release nogil;
        ek::emu::multibit_scores(q.data(), q.shape(0), db.data(), db.shape(0), q.shape(1), q.shape(2), dim,
                                 weights.data(), out.mutable_data(), o, sm_count);
        return out;
    }, py::arg("queries"), py::arg("database"), py::arg("dim"), py::arg("weights"), py::arg("threads") = 32,
       py::arg("sm_count") = 1);
    m.def("_emulate_multibit_topk", [](const carray<uint8_t>& q, const carray<uint8_t>& db, int64_t k,
                                       int64_t dim, const carray<double>& weights, int path, int64_t partitions,
                                       int threads, int items_per_thread, int64_t batch_bytes, int sm_count) {
        require_multibit(q, db);
        require_weights(weights, q.shape(1));
        const ek::MultibitOptions o = multibit_options(path, partitions, threads, items_per_thread, batch_bytes);
        py::array_t<float> s({q.shape(0), static_cast<py::ssize_t>(k > 0 ? k : 0)});
        py::array_t<int64_t> i({q.shape(0), static_cast<py::ssize_t>(k > 0 ? k : 0)});
        {
            py::gil_scoped_release nogil;
            ek::emu::multibit_topk(q.data(), q.shape(0), db.data(), db.shape(0), q.shape(1), q.shape(2), dim,
                                   weights.data(), k, s.mutable_data(), i.mutable_data(), o, sm_count);
        }
        return py::make_tuple(s, i);
    }, py::arg("queries"), py::arg("database"), py::arg("k"), py::arg("dim"), py::arg("weights"),
       py::arg("path") = 0, py::arg("partitions") = 0, py::arg("threads") = 32, py::arg("items_per_thread") = 1,
       py::arg("batch_bytes") = 0, py::arg("sm_count") = 1);
}

}  // namespace embkern::cuda
