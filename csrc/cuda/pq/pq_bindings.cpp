// Python bindings of the PQ CUDA kernels (embkern._cuda.pq): launchers on device pointers, and
// their host emulation (numpy in, numpy out) for tests without a GPU. Keyword arguments of both
// select launch choices (PqLaunch; tests only).
#include <string>

#include "cuda/common/bindings.hpp"
#include "cuda/pq/pq_cuda.hpp"

namespace embkern::cuda {

using namespace bind;
namespace ek = embkern::cuda;

namespace {

ek::PqLaunch launch_from(const py::kwargs& kw) {
    ek::PqLaunch l;
    for (auto item : kw) {
        const std::string key = py::str(item.first);
        const py::handle v = item.second;
        if (key == "threads") l.threads = v.cast<int>();
        else if (key == "smem") l.smem = v.cast<int>();
        else if (key == "path") l.path = v.cast<int>();
        else if (key == "partitions") l.partitions = v.cast<int64_t>();
        else if (key == "items_per_thread") l.items_per_thread = v.cast<int>();
        else if (key == "run") l.run = v.cast<int>();
        else if (key == "batch_bytes") l.batch_bytes = v.cast<int64_t>();
        else if (key == "queries_per_block") l.queries_per_block = v.cast<int>();
        else if (key == "train_part") l.train_part = v.cast<int64_t>();
        else if (key == "sm_count") continue;
        else throw py::value_error("unknown launch option '" + key + "'");
    }
    return l;
}

int sm_count_from(const py::kwargs& kw) {
    if (!kw.contains("sm_count")) return 1;
    const int s = kw["sm_count"].cast<int>();
    require(s >= 1, "sm_count must be >= 1");
    return s;
}

void check_nbits(int nbits) { require(nbits == 4 || nbits == 8, "nbits must be 4 or 8"); }

// centroids (m, 2**nbits, dsub) -> (m, dsub)
std::pair<int64_t, int64_t> centroid_shape(const carray<float>& c, int nbits) {
    require(c.ndim() == 3, "centroids must have 3 dimensions, got " + std::to_string(c.ndim()));
    require(c.shape(1) == (int64_t(1) << nbits), "centroids must have 2**nbits rows per sub-quantizer");
    require(c.shape(0) >= 1 && c.shape(2) >= 1, "centroids must not be empty");
    return {c.shape(0), c.shape(2)};
}

int64_t code_bytes(int64_t m, int nbits) { return (m * nbits + 7) / 8; }

void check_codes(const carray<uint8_t>& codes, int64_t m, int nbits) {
    require_2d(codes, "codes");
    require(codes.shape(1) == code_bytes(m, nbits),
            "codes must have ceil(m * nbits / 8) = " + std::to_string(code_bytes(m, nbits)) + " bytes per row");
}

int lut_nbits(const carray<float>& lut) {
    require(lut.ndim() == 3, "lut must have 3 dimensions, got " + std::to_string(lut.ndim()));
    require(lut.shape(2) == 16 || lut.shape(2) == 256, "lut must have 16 (4-bit) or 256 (8-bit) entries per sub-quantizer");
    require(lut.shape(1) >= 1, "lut must have at least one sub-quantizer");
    return lut.shape(2) == 16 ? 4 : 8;
}

void check_packed(const carray<uint8_t>& packed, int64_t n, int64_t m) {
    require(packed.ndim() == 1, "packed must have 1 dimension");
    require(m >= 1 && n >= 0, "n must be >= 0 and m >= 1");
    require(packed.shape(0) == ek::pq_fastscan_bytes(n, m),
            "packed must hold ceil(n / 32) * 32 * ceil(m / 2) = " + std::to_string(ek::pq_fastscan_bytes(n, m)) + " bytes");
}

py::array_t<float> empty_f(std::initializer_list<py::ssize_t> shape) { return py::array_t<float>(shape); }

}  // namespace

void bind_pq(py::module_ m) {
    // ---- kernels on device pointers ----------------------------------------------------------
    m.def("encode", [](uptr x, int64_t n, int64_t dim, uptr cent, int64_t mm, int nbits, uptr codes, uptr stream,
                       int device, const py::kwargs& kw) {
        const ek::PqLaunch l = launch_from(kw);
        py::gil_scoped_release nogil;
        ek::pq_encode(in_ptr<float>(x), n, dim, in_ptr<float>(cent), mm, nbits, out_ptr<uint8_t>(codes), stream,
                      device, l);
    }, py::arg("x"), py::arg("n"), py::arg("dim"), py::arg("centroids"), py::arg("m"), py::arg("nbits"),
       py::arg("codes"), py::arg("stream") = 0, py::arg("device") = -1,
       "codes[n, ceil(m * nbits / 8)] = nearest centroids of x[n, dim] (faiss's layout and ties)");
    m.def("decode", [](uptr codes, int64_t n, uptr cent, int64_t dim, int64_t mm, int nbits, uptr out, uptr stream,
                       int device, const py::kwargs& kw) {
        const ek::PqLaunch l = launch_from(kw);
        py::gil_scoped_release nogil;
        ek::pq_decode(in_ptr<uint8_t>(codes), n, in_ptr<float>(cent), dim, mm, nbits, out_ptr<float>(out), stream,
                      device, l);
    }, py::arg("codes"), py::arg("n"), py::arg("centroids"), py::arg("dim"), py::arg("m"), py::arg("nbits"),
       py::arg("out"), py::arg("stream") = 0, py::arg("device") = -1);
    m.def("distance_tables", [](uptr x, int64_t n, int64_t dim, uptr cent, int64_t mm, int nbits, bool ip, uptr out,
                                uptr stream, int device, const py::kwargs& kw) {
        const ek::PqLaunch l = launch_from(kw);
        py::gil_scoped_release nogil;
        ek::pq_distance_tables(in_ptr<float>(x), n, dim, in_ptr<float>(cent), mm, nbits, ip, out_ptr<float>(out),
                               stream, device, l);
    }, py::arg("x"), py::arg("n"), py::arg("dim"), py::arg("centroids"), py::arg("m"), py::arg("nbits"),
       py::arg("ip"), py::arg("out"), py::arg("stream") = 0, py::arg("device") = -1);
    m.def("adc_distances", [](uptr lut, int64_t nq, uptr codes, int64_t n, int64_t mm, int nbits, uptr out,
                              uptr stream, int device, const py::kwargs& kw) {
        const ek::PqLaunch l = launch_from(kw);
        py::gil_scoped_release nogil;
        ek::pq_adc_distances(in_ptr<float>(lut), nq, in_ptr<uint8_t>(codes), n, mm, nbits, out_ptr<float>(out),
                             stream, device, l);
    }, py::arg("lut"), py::arg("nq"), py::arg("codes"), py::arg("n"), py::arg("m"), py::arg("nbits"),
       py::arg("out"), py::arg("stream") = 0, py::arg("device") = -1);
    m.def("adc_topk", [](uptr lut, int64_t nq, uptr codes, int64_t n, int64_t mm, int nbits, int64_t k, bool largest,
                         uptr out_d, uptr out_i, uptr stream, int device, const py::kwargs& kw) {
        const ek::PqLaunch l = launch_from(kw);
        py::gil_scoped_release nogil;
        ek::pq_adc_topk(in_ptr<float>(lut), nq, in_ptr<uint8_t>(codes), n, mm, nbits, k, largest,
                        out_ptr<float>(out_d), out_ptr<int64_t>(out_i), stream, device, l);
    }, py::arg("lut"), py::arg("nq"), py::arg("codes"), py::arg("n"), py::arg("m"), py::arg("nbits"),
       py::arg("k"), py::arg("largest"), py::arg("out_d"), py::arg("out_i"), py::arg("stream") = 0,
       py::arg("device") = -1);
    m.def("fastscan_bytes", &ek::pq_fastscan_bytes, py::arg("n"), py::arg("m"));
    m.def("pack_fastscan", [](uptr codes, int64_t n, int64_t mm, uptr packed, uptr stream, int device,
                              const py::kwargs& kw) {
        const ek::PqLaunch l = launch_from(kw);
        py::gil_scoped_release nogil;
        ek::pq_pack_fastscan(in_ptr<uint8_t>(codes), n, mm, out_ptr<uint8_t>(packed), stream, device, l);
    }, py::arg("codes"), py::arg("n"), py::arg("m"), py::arg("packed"), py::arg("stream") = 0,
       py::arg("device") = -1);
    m.def("unpack_fastscan", [](uptr packed, int64_t n, int64_t mm, uptr codes, uptr stream, int device,
                                const py::kwargs& kw) {
        const ek::PqLaunch l = launch_from(kw);
        py::gil_scoped_release nogil;
        ek::pq_unpack_fastscan(in_ptr<uint8_t>(packed), n, mm, out_ptr<uint8_t>(codes), stream, device, l);
    }, py::arg("packed"), py::arg("n"), py::arg("m"), py::arg("codes"), py::arg("stream") = 0,
       py::arg("device") = -1);
    m.def("fastscan_topk", [](uptr lut, int64_t nq, uptr packed, int64_t n, int64_t mm, int64_t k, bool largest,
                              uptr out_d, uptr out_i, uptr stream, int device, const py::kwargs& kw) {
        const ek::PqLaunch l = launch_from(kw);
        py::gil_scoped_release nogil;
        ek::pq_fastscan_topk(in_ptr<float>(lut), nq, in_ptr<uint8_t>(packed), n, mm, k, largest,
                             out_ptr<float>(out_d), out_ptr<int64_t>(out_i), stream, device, l);
    }, py::arg("lut"), py::arg("nq"), py::arg("packed"), py::arg("n"), py::arg("m"), py::arg("k"),
       py::arg("largest"), py::arg("out_d"), py::arg("out_i"), py::arg("stream") = 0, py::arg("device") = -1);
    m.def("fastscan_rerank", [](uptr lut, int64_t nq, uptr packed, int64_t n, int64_t mm, uptr cand, int64_t r,
                                int64_t k, bool largest, uptr out_d, uptr out_i, uptr stream, int device,
                                const py::kwargs& kw) {
        const ek::PqLaunch l = launch_from(kw);
        py::gil_scoped_release nogil;
        ek::pq_fastscan_rerank(in_ptr<float>(lut), nq, in_ptr<uint8_t>(packed), n, mm, in_ptr<int64_t>(cand), r, k,
                               largest, out_ptr<float>(out_d), out_ptr<int64_t>(out_i), stream, device, l);
    }, py::arg("lut"), py::arg("nq"), py::arg("packed"), py::arg("n"), py::arg("m"), py::arg("cand"),
       py::arg("r"), py::arg("k"), py::arg("largest"), py::arg("out_d"), py::arg("out_i"), py::arg("stream") = 0,
       py::arg("device") = -1);
    m.def("train", [](uptr x, int64_t n, int64_t dim, int64_t mm, int nbits, int iterations, uptr init, uptr out,
                      uptr stream, int device, const py::kwargs& kw) {
        const ek::PqLaunch l = launch_from(kw);
        py::gil_scoped_release nogil;
        ek::pq_train(in_ptr<float>(x), n, dim, mm, nbits, iterations, in_ptr<float>(init), out_ptr<float>(out),
                     stream, device, l);
    }, py::arg("x"), py::arg("n"), py::arg("dim"), py::arg("m"), py::arg("nbits"), py::arg("iterations"),
       py::arg("init"), py::arg("out"), py::arg("stream") = 0, py::arg("device") = -1);

    // ---- host emulation of the same kernels (numpy in, numpy out; keyword sm_count and launch) --
    m.def("_emulate_encode", [](const carray<float>& x, const carray<float>& cent, int nbits, const py::kwargs& kw) {
        check_nbits(nbits);
        const auto [mm, dsub] = centroid_shape(cent, nbits);
        require_2d(x, "x");
        require(x.shape(1) == mm * dsub, "x must have dim = m * dsub columns");
        py::array_t<uint8_t> out({x.shape(0), static_cast<py::ssize_t>(code_bytes(mm, nbits))});
        const ek::PqLaunch l = launch_from(kw);
        const int sms = sm_count_from(kw);
        py::gil_scoped_release nogil;
        ek::emu::pq_encode(x.data(), x.shape(0), mm * dsub, cent.data(), mm, nbits, out.mutable_data(), l, sms);
        return out;
    }, py::arg("x"), py::arg("centroids"), py::arg("nbits"));
    m.def("_emulate_decode", [](const carray<uint8_t>& codes, const carray<float>& cent, int nbits,
                                const py::kwargs& kw) {
        check_nbits(nbits);
        const auto [mm, dsub] = centroid_shape(cent, nbits);
        check_codes(codes, mm, nbits);
        auto out = empty_f({codes.shape(0), static_cast<py::ssize_t>(mm * dsub)});
        const ek::PqLaunch l = launch_from(kw);
        const int sms = sm_count_from(kw);
        py::gil_scoped_release nogil;
        ek::emu::pq_decode(codes.data(), codes.shape(0), cent.data(), mm * dsub, mm, nbits, out.mutable_data(), l, sms);
        return out;
    }, py::arg("codes"), py::arg("centroids"), py::arg("nbits"));
    m.def("_emulate_distance_tables", [](const carray<float>& x, const carray<float>& cent, int nbits, bool ip,
                                         const py::kwargs& kw) {
        check_nbits(nbits);
        const auto [mm, dsub] = centroid_shape(cent, nbits);
        require_2d(x, "queries");
        require(x.shape(1) == mm * dsub, "queries must have dim = m * dsub columns");
        auto out = empty_f({x.shape(0), static_cast<py::ssize_t>(mm), static_cast<py::ssize_t>(1 << nbits)});
        const ek::PqLaunch l = launch_from(kw);
        const int sms = sm_count_from(kw);
        py::gil_scoped_release nogil;
        ek::emu::pq_distance_tables(x.data(), x.shape(0), mm * dsub, cent.data(), mm, nbits, ip, out.mutable_data(),
                                    l, sms);
        return out;
    }, py::arg("x"), py::arg("centroids"), py::arg("nbits"), py::arg("ip"));
    m.def("_emulate_adc_distances", [](const carray<float>& lut, const carray<uint8_t>& codes, const py::kwargs& kw) {
        const int nbits = lut_nbits(lut);
        check_codes(codes, lut.shape(1), nbits);
        auto out = empty_f({lut.shape(0), codes.shape(0)});
        const ek::PqLaunch l = launch_from(kw);
        const int sms = sm_count_from(kw);
        py::gil_scoped_release nogil;
        ek::emu::pq_adc_distances(lut.data(), lut.shape(0), codes.data(), codes.shape(0), lut.shape(1), nbits,
                                  out.mutable_data(), l, sms);
        return out;
    }, py::arg("lut"), py::arg("codes"));
    m.def("_emulate_adc_topk", [](const carray<float>& lut, const carray<uint8_t>& codes, int64_t k, bool largest,
                                  const py::kwargs& kw) {
        const int nbits = lut_nbits(lut);
        check_codes(codes, lut.shape(1), nbits);
        require(k >= 1 && k <= codes.shape(0), "k must be in [1, " + std::to_string(codes.shape(0)) + "]");
        auto d = empty_f({lut.shape(0), static_cast<py::ssize_t>(k)});
        py::array_t<int64_t> i({lut.shape(0), static_cast<py::ssize_t>(k)});
        const ek::PqLaunch l = launch_from(kw);
        const int sms = sm_count_from(kw);
        {
            py::gil_scoped_release nogil;
            ek::emu::pq_adc_topk(lut.data(), lut.shape(0), codes.data(), codes.shape(0), lut.shape(1), nbits, k,
                                 largest, d.mutable_data(), i.mutable_data(), l, sms);
        }
        return py::make_tuple(d, i);
    }, py::arg("lut"), py::arg("codes"), py::arg("k"), py::arg("largest"));
    m.def("_emulate_pack_fastscan", [](const carray<uint8_t>& codes, int64_t mm, const py::kwargs& kw) {
        require(mm >= 1, "m must be >= 1");
        check_codes(codes, mm, 4);
        py::array_t<uint8_t> out(static_cast<py::ssize_t>(ek::pq_fastscan_bytes(codes.shape(0), mm)));
        const ek::PqLaunch l = launch_from(kw);
        const int sms = sm_count_from(kw);
        py::gil_scoped_release nogil;
        ek::emu::pq_pack_fastscan(codes.data(), codes.shape(0), mm, out.mutable_data(), l, sms);
        return out;
    }, py::arg("codes"), py::arg("m"));
    m.def("_emulate_unpack_fastscan", [](const carray<uint8_t>& packed, int64_t n, int64_t mm, const py::kwargs& kw) {
        check_packed(packed, n, mm);
        py::array_t<uint8_t> out({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(code_bytes(mm, 4))});
        const ek::PqLaunch l = launch_from(kw);
        const int sms = sm_count_from(kw);
        py::gil_scoped_release nogil;
        ek::emu::pq_unpack_fastscan(packed.data(), n, mm, out.mutable_data(), l, sms);
        return out;
    }, py::arg("packed"), py::arg("n"), py::arg("m"));
    m.def("_emulate_fastscan_topk", [](const carray<float>& lut, const carray<uint8_t>& packed, int64_t n, int64_t mm,
                                       int64_t k, bool largest, const py::kwargs& kw) {
        require(lut.ndim() == 3 && lut.shape(1) == mm && lut.shape(2) == 16, "lut must have shape (nq, m, 16)");
        check_packed(packed, n, mm);
        require(k >= 1 && k <= n, "k must be in [1, " + std::to_string(n) + "]");
        auto d = empty_f({lut.shape(0), static_cast<py::ssize_t>(k)});
        py::array_t<int64_t> i({lut.shape(0), static_cast<py::ssize_t>(k)});
        const ek::PqLaunch l = launch_from(kw);
        const int sms = sm_count_from(kw);
        {
            py::gil_scoped_release nogil;
            ek::emu::pq_fastscan_topk(lut.data(), lut.shape(0), packed.data(), n, mm, k, largest, d.mutable_data(),
                                      i.mutable_data(), l, sms);
        }
        return py::make_tuple(d, i);
    }, py::arg("lut"), py::arg("packed"), py::arg("n"), py::arg("m"), py::arg("k"), py::arg("largest"));
    m.def("_emulate_fastscan_rerank", [](const carray<float>& lut, const carray<uint8_t>& packed, int64_t n,
                                         int64_t mm, const carray<int64_t>& cand, int64_t k, bool largest,
                                         const py::kwargs& kw) {
        require(lut.ndim() == 3 && lut.shape(1) == mm && lut.shape(2) == 16, "lut must have shape (nq, m, 16)");
        check_packed(packed, n, mm);
        require(cand.ndim() == 2 && cand.shape(0) == lut.shape(0), "cand must have shape (nq, r)");
        const int64_t r = cand.shape(1);
        require(k >= 1 && k <= r, "k must be in [1, r]");
        auto d = empty_f({lut.shape(0), static_cast<py::ssize_t>(k)});
        py::array_t<int64_t> i({lut.shape(0), static_cast<py::ssize_t>(k)});
        const ek::PqLaunch l = launch_from(kw);
        const int sms = sm_count_from(kw);
        {
            py::gil_scoped_release nogil;
            ek::emu::pq_fastscan_rerank(lut.data(), lut.shape(0), packed.data(), n, mm, cand.data(), r, k, largest,
                                        d.mutable_data(), i.mutable_data(), l, sms);
        }
        return py::make_tuple(d, i);
    }, py::arg("lut"), py::arg("packed"), py::arg("n"), py::arg("m"), py::arg("cand"), py::arg("k"),
       py::arg("largest"));
    m.def("_emulate_train", [](const carray<float>& x, const carray<float>& cent, int nbits, int iterations,
                               const py::kwargs& kw) {
        check_nbits(nbits);
        const auto [mm, dsub] = centroid_shape(cent, nbits);
        require_2d(x, "x");
        require(x.shape(1) == mm * dsub, "x must have dim = m * dsub columns");
        auto out = empty_f({cent.shape(0), cent.shape(1), cent.shape(2)});
        const ek::PqLaunch l = launch_from(kw);
        const int sms = sm_count_from(kw);
        py::gil_scoped_release nogil;
        ek::emu::pq_train(x.data(), x.shape(0), mm * dsub, mm, nbits, iterations, cent.data(), out.mutable_data(), l,
                          sms);
        return out;
    }, py::arg("x"), py::arg("centroids"), py::arg("nbits"), py::arg("iterations"));
}

}  // namespace embkern::cuda
