#include "binary/binary.hpp"
#include "bindings/arrays.hpp"
#include "bindings/output_pool.hpp"

namespace embkern::bindings {

namespace {

void same_width(const carray<uint8_t>& a, const carray<uint8_t>& b) {
    require(a.shape(1) == b.shape(1),
            "code widths differ: " + std::to_string(a.shape(1)) + " vs " + std::to_string(b.shape(1)) + " bytes");
    require(a.shape(1) > 0, "codes must have at least one byte");
}

template <class T>
py::array_t<uint8_t> pack_signs(const carray<T>& x, T threshold, bool little,
                                void (*fn)(const T*, int64_t, int64_t, T, bool, uint8_t*)) {
    require_ndim(x, 2, "x");
    const int64_t n = x.shape(0), d = x.shape(1);
    py::array_t<uint8_t> out({n, (d + 7) / 8});
    {
        py::gil_scoped_release nogil;
        fn(x.data(), n, d, threshold, little, out.mutable_data());
    }
    return out;
}

}  // namespace

void register_binary(py::module_& m) {
    m.def("pack_signs_f32", [](const carray<float>& x, float t, bool little) {
        return pack_signs<float>(x, t, little, &binary::pack_signs_f32);
    });
    m.def("pack_signs_f64", [](const carray<double>& x, double t, bool little) {
        return pack_signs<double>(x, t, little, &binary::pack_signs_f64);
    });
    m.def("hamming_distance", [](const carray<uint8_t>& a, const carray<uint8_t>& b) {
        require_ndim(a, 2, "a");
        require_ndim(b, 2, "b");
        same_width(a, b);
        py::array_t<int32_t> out = output_pool::new_output<int32_t>(a.shape(0), b.shape(0));
        {
            py::gil_scoped_release nogil;
            binary::hamming_distance(a.data(), a.shape(0), b.data(), b.shape(0), a.shape(1),
                                     out.mutable_data());
        }
        return out;
    });
    m.def("hamming_topk", [](const carray<uint8_t>& q, const carray<uint8_t>& db, int64_t k) {
        require_ndim(q, 2, "queries");
        require_ndim(db, 2, "database");
        same_width(q, db);
        require(k >= 1 && k <= db.shape(0), "k must be in [1, " + std::to_string(db.shape(0)) + "]");
        py::array_t<int32_t> d({q.shape(0), static_cast<py::ssize_t>(k)});
        py::array_t<int64_t> i({q.shape(0), static_cast<py::ssize_t>(k)});
        {
            py::gil_scoped_release nogil;
            binary::hamming_topk(q.data(), q.shape(0), db.data(), db.shape(0), q.shape(1), k,
                                 d.mutable_data(), i.mutable_data());
        }
        return py::make_tuple(d, i);
    });
    m.def("hamming_range", [](const carray<uint8_t>& q, const carray<uint8_t>& db, int32_t radius) {
        require_ndim(q, 2, "queries");
        require_ndim(db, 2, "database");
        same_width(q, db);
        binary::RangeResult r;
        {
            py::gil_scoped_release nogil;
            r = binary::hamming_range(q.data(), q.shape(0), db.data(), db.shape(0), q.shape(1), radius);
        }
        auto to_np = [](auto& v) {
            using T = typename std::decay_t<decltype(v)>::value_type;
            py::array_t<T> a(static_cast<py::ssize_t>(v.size()));
            std::copy(v.begin(), v.end(), a.mutable_data());
            return a;
        };
        return py::make_tuple(to_np(r.lims), to_np(r.distances), to_np(r.ids));
    });
    m.def("asymmetric_scores", [](const carray<float>& q, const carray<uint8_t>& codes, bool little) {
        require_ndim(q, 2, "queries");
        require_ndim(codes, 2, "database");
        const int64_t d = q.shape(1);
        require(codes.shape(1) == (d + 7) / 8, "database must have ceil(d/8) bytes per code");
        py::array_t<float> out({q.shape(0), codes.shape(0)});
        {
            py::gil_scoped_release nogil;
            binary::asymmetric_scores(q.data(), q.shape(0), d, codes.data(), codes.shape(0), little,
                                      out.mutable_data());
        }
        return out;
    });
    auto multibit_check = [](const carray<uint8_t>& q, const carray<uint8_t>& db, int64_t dim,
                             const carray<double>& w) {
        require_ndim(q, 3, "queries");
        require_ndim(db, 3, "database");
        require(q.shape(1) == db.shape(1) && q.shape(2) == db.shape(2),
                "queries and database must have the same planes and bytes per plane");
        require(q.shape(2) > 0 && q.shape(1) > 0, "codes must have at least one plane and byte");
        require(dim >= 1 && (dim + 7) / 8 == q.shape(2), "dim must satisfy ceil(dim/8) == bytes per plane");
        require(w.ndim() == 1 && w.shape(0) == q.shape(1), "weights must have one value per plane");
    };
    m.def("multibit_scores", [multibit_check](const carray<uint8_t>& q, const carray<uint8_t>& db,
                                              int64_t dim, const carray<double>& w) {
        multibit_check(q, db, dim, w);
        py::array_t<float> out({q.shape(0), db.shape(0)});
        {
            py::gil_scoped_release nogil;
            binary::multibit_scores(q.data(), q.shape(0), db.data(), db.shape(0), q.shape(1),
                                    q.shape(2), dim, w.data(), out.mutable_data());
        }
        return out;
    });
    m.def("multibit_topk", [multibit_check](const carray<uint8_t>& q, const carray<uint8_t>& db,
                                            int64_t k, int64_t dim, const carray<double>& w) {
        multibit_check(q, db, dim, w);
        require(k >= 1 && k <= db.shape(0), "k must be in [1, " + std::to_string(db.shape(0)) + "]");
        py::array_t<float> s({q.shape(0), static_cast<py::ssize_t>(k)});
        py::array_t<int64_t> i({q.shape(0), static_cast<py::ssize_t>(k)});
        {
            py::gil_scoped_release nogil;
            binary::multibit_topk(q.data(), q.shape(0), db.data(), db.shape(0), q.shape(1),
                                  q.shape(2), dim, w.data(), k, s.mutable_data(), i.mutable_data());
        }
        return py::make_tuple(s, i);
    });
}

}  // namespace embkern::bindings
