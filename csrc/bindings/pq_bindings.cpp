#include "bindings/arrays.hpp"
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
        py::array_t<float> out({codes.shape(0), static_cast<py::ssize_t>(dim)});
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
        py::array_t<float> out({lut.shape(0), codes.shape(0)});
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
