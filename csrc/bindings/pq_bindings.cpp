#include "bindings/arrays.hpp"
#include "bindings/output_pool.hpp"
#include "pq/pq.hpp"

namespace embkern::bindings {

namespace {

int64_t code_size(int64_t m, int nbits) { return (m * nbits + 7) / 8; }

void check_nbits(int nbits) { require(nbits == 4 || nbits == 8, "nbits must be 4 or 8"); }

// centroids (m, ksub, dsub) with ksub = 2**nbits
void check_centroids(const carray<float>& c, int nbits) {
    require_ndim(c, 3, "centroids");
    require(c.shape(1) == (int64_t(1) << nbits), "centroids must have 2**nbits rows per sub-quantizer");
    require(c.shape(0) >= 1 && c.shape(2) >= 1, "centroids must not be empty");
}

void check_codes(const carray<uint8_t>& codes, int64_t m, int nbits) {
    require_ndim(codes, 2, "codes");
    require(codes.shape(1) == code_size(m, nbits),
            "codes must have ceil(m * nbits / 8) = " + std::to_string(code_size(m, nbits)) + " bytes per row");
}

// packed fast-scan codes: 1-D, exactly fastscan_bytes(n, m) bytes
void check_packed(const carray<uint8_t>& packed, int64_t n, int64_t m) {
    require_ndim(packed, 1, "packed");
    const int64_t want = pq::fastscan_bytes(n, m);
    require(packed.shape(0) == want,
            "packed must hold ceil(n / 32) * 32 * ceil(m / 2) = " + std::to_string(want) +
                " bytes for n=" + std::to_string(n) + ", m=" + std::to_string(m) + ", got " +
                std::to_string(packed.shape(0)));
}

// lut (nq, m, ksub) -> nbits
int lut_nbits(const carray<float>& lut) {
    require_ndim(lut, 3, "lut");
    require(lut.shape(2) == 16 || lut.shape(2) == 256, "lut must have 16 (4-bit) or 256 (8-bit) entries per sub-quantizer");
    require(lut.shape(1) >= 1, "lut must have at least one sub-quantizer");
    return lut.shape(2) == 16 ? 4 : 8;
}

}  // namespace

void register_pq(py::module_& m) {
    m.def("encode", [](const carray<float>& x, const carray<float>& cent, int nbits) {
        check_nbits(nbits);
        check_centroids(cent, nbits);
        require_ndim(x, 2, "x");
        const int64_t M = cent.shape(0), dim = M * cent.shape(2);
        require(x.shape(1) == dim, "x must have dim = m * dsub columns");
        py::array_t<uint8_t> out({x.shape(0), static_cast<py::ssize_t>(code_size(M, nbits))});
        {
            py::gil_scoped_release nogil;
            pq::encode(x.data(), x.shape(0), dim, cent.data(), M, nbits, out.mutable_data());
        }
        return out;
    });
    m.def("decode", [](const carray<uint8_t>& codes, const carray<float>& cent, int nbits) {
        check_nbits(nbits);
        check_centroids(cent, nbits);
        const int64_t M = cent.shape(0), dim = M * cent.shape(2);
        check_codes(codes, M, nbits);
        py::array_t<float> out = output_pool::new_output<float>(codes.shape(0), dim);
        {
            py::gil_scoped_release nogil;
            pq::decode(codes.data(), codes.shape(0), cent.data(), dim, M, nbits, out.mutable_data());
        }
        return out;
    });
    m.def("distance_tables", [](const carray<float>& x, const carray<float>& cent, int nbits, bool ip) {
        check_nbits(nbits);
        check_centroids(cent, nbits);
        require_ndim(x, 2, "queries");
        const int64_t M = cent.shape(0), dim = M * cent.shape(2), ksub = cent.shape(1);
        require(x.shape(1) == dim, "queries must have dim = m * dsub columns");
        py::array_t<float> out({x.shape(0), static_cast<py::ssize_t>(M), static_cast<py::ssize_t>(ksub)});
        {
            py::gil_scoped_release nogil;
            pq::distance_tables(x.data(), x.shape(0), dim, cent.data(), M, nbits, ip, out.mutable_data());
        }
        return out;
    });
    m.def("adc_distances", [](const carray<float>& lut, const carray<uint8_t>& codes) {
        const int nbits = lut_nbits(lut);
        const int64_t M = lut.shape(1);
        check_codes(codes, M, nbits);
        py::array_t<float> out = output_pool::new_output<float>(lut.shape(0), codes.shape(0));
        {
            py::gil_scoped_release nogil;
            pq::adc_distances(lut.data(), lut.shape(0), codes.data(), codes.shape(0), M, nbits,
                              out.mutable_data());
        }
        return out;
    });
    m.def("adc_topk", [](const carray<float>& lut, const carray<uint8_t>& codes, int64_t k, bool largest) {
        const int nbits = lut_nbits(lut);
        const int64_t M = lut.shape(1);
        check_codes(codes, M, nbits);
        require(k >= 1 && k <= codes.shape(0), "k must be in [1, " + std::to_string(codes.shape(0)) + "]");
        py::array_t<float> d({lut.shape(0), static_cast<py::ssize_t>(k)});
        py::array_t<int64_t> i({lut.shape(0), static_cast<py::ssize_t>(k)});
        {
            py::gil_scoped_release nogil;
            pq::adc_topk(lut.data(), lut.shape(0), codes.data(), codes.shape(0), M, nbits, k, largest,
                         d.mutable_data(), i.mutable_data());
        }
        return py::make_tuple(d, i);
    });
    m.def("pack_fastscan", [](const carray<uint8_t>& codes, int64_t m) {
        require(m >= 1, "m must be >= 1");
        check_codes(codes, m, 4);
        const int64_t n = codes.shape(0);
        py::array_t<uint8_t> out(static_cast<py::ssize_t>(pq::fastscan_bytes(n, m)));
        {
            py::gil_scoped_release nogil;
            pq::pack_fastscan(codes.data(), n, m, out.mutable_data());
        }
        return out;
    });
    m.def("unpack_fastscan", [](const carray<uint8_t>& packed, int64_t n, int64_t m) {
        require(m >= 1, "m must be >= 1");
        require(n >= 0, "n must be >= 0");
        check_packed(packed, n, m);
        py::array_t<uint8_t> out({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(code_size(m, 4))});
        {
            py::gil_scoped_release nogil;
            pq::unpack_fastscan(packed.data(), n, m, out.mutable_data());
        }
        return out;
    });
    m.def("fastscan_topk", [](const carray<float>& lut, const carray<uint8_t>& packed, int64_t n,
                              int64_t m, int64_t k, bool largest) {
        require_ndim(lut, 3, "lut");
        require(m >= 1 && m <= pq::kFastScanMaxM,
                "fast-scan search takes 1 <= m <= " + std::to_string(pq::kFastScanMaxM) +
                    " sub-quantizers (16-bit accumulators), got " + std::to_string(m));
        require(lut.shape(1) == m && lut.shape(2) == 16,
                "lut must have shape (nq, m, 16) = (nq, " + std::to_string(m) + ", 16)");
        require(n >= 1, "n must be >= 1");
        check_packed(packed, n, m);
        require(k >= 1 && k <= n, "k must be in [1, " + std::to_string(n) + "]");
        const int64_t nq = lut.shape(0);
        py::array_t<float> d({static_cast<py::ssize_t>(nq), static_cast<py::ssize_t>(k)});
        py::array_t<int64_t> i({static_cast<py::ssize_t>(nq), static_cast<py::ssize_t>(k)});
        {
            py::gil_scoped_release nogil;
            pq::fastscan_topk(lut.data(), nq, packed.data(), n, m, k, largest, d.mutable_data(),
                              i.mutable_data());
        }
        return py::make_tuple(d, i);
    });
    m.def("train", [](const carray<float>& x, py::array_t<float, py::array::c_style> cent, int nbits,
                      int iterations) {
        check_nbits(nbits);
        check_centroids(cent, nbits);
        require_ndim(x, 2, "x");
        const int64_t M = cent.shape(0), dim = M * cent.shape(2);
        require(x.shape(1) == dim, "x must have dim = m * dsub columns");
        require(x.shape(0) >= 1, "x must not be empty");
        require(iterations >= 0, "iterations must be >= 0");
        py::array_t<float> out({cent.shape(0), cent.shape(1), cent.shape(2)});
        std::copy(cent.data(), cent.data() + cent.size(), out.mutable_data());
        {
            py::gil_scoped_release nogil;
            pq::train(x.data(), x.shape(0), dim, M, nbits, iterations, out.mutable_data());
        }
        return out;
    });
}

}  // namespace embkern::bindings
