// pybind11 glue of the fde family.
#include "bindings/arrays.hpp"
#include "bindings/output_pool.hpp"
#include "fde/fde.hpp"

namespace embkern::bindings {

namespace {

void check_sizes(int64_t d, int64_t reps, int64_t k, int64_t p) {
    require(d >= 1, "dimension must be >= 1");
    require(reps >= 1, "num_repetitions must be >= 1");
    require(k >= 0 && k <= 30, "num_simhash_projections must be in 0..30");
    require(p >= 1, "projection dimension must be >= 1");
}

}  // namespace

void register_fde(py::module_& m) {
    // (d, reps * k): column r * k + j is hyperplane j of repetition r (seed + r).
    m.def("simhash_matrices", [](int64_t seed, int64_t reps, int64_t d, int64_t k) {
        check_sizes(d, reps, k, 1);
        py::array_t<float> out({static_cast<py::ssize_t>(d), static_cast<py::ssize_t>(reps * k)});
        {
            py::gil_scoped_release nogil;
            std::vector<float> one(static_cast<size_t>(d * k));
            float* o = out.mutable_data();
            for (int64_t r = 0; r < reps; ++r) {
                fde::simhash_matrix(static_cast<uint32_t>(seed + r), d, k, one.data());
                for (int64_t i = 0; i < d; ++i)
                    for (int64_t j = 0; j < k; ++j) o[i * reps * k + r * k + j] = one[i * k + j];
            }
        }
        return out;
    });
    // (col int32 (reps, d), sign float32 (reps, d))
    m.def("ams_tables", [](int64_t seed, int64_t reps, int64_t d, int64_t p) {
        check_sizes(d, reps, 0, p);
        py::array_t<int32_t> col({static_cast<py::ssize_t>(reps), static_cast<py::ssize_t>(d)});
        py::array_t<float> sign({static_cast<py::ssize_t>(reps), static_cast<py::ssize_t>(d)});
        {
            py::gil_scoped_release nogil;
            for (int64_t r = 0; r < reps; ++r)
                fde::ams_hash(static_cast<uint32_t>(seed + r), d, p, col.mutable_data() + r * d,
                              sign.mutable_data() + r * d);
        }
        return py::make_tuple(col, sign);
    });
    m.def("count_sketch", [](int64_t seed, int64_t inner_dim, int64_t final_dim) {
        require(inner_dim >= 1 && final_dim >= 1, "dimensions must be >= 1");
        require(final_dim <= 0x7fffffff, "final_projection_dimension must fit int32");
        py::array_t<int32_t> idx(static_cast<py::ssize_t>(inner_dim));
        py::array_t<float> sign(static_cast<py::ssize_t>(inner_dim));
        {
            py::gil_scoped_release nogil;
            fde::count_sketch(static_cast<uint32_t>(seed), inner_dim, final_dim, idx.mutable_data(),
                              sign.mutable_data());
        }
        return py::make_tuple(idx, sign);
    });
    m.def("encode",
          [](const carray<float>& x, const carray<int64_t>& offsets, const carray<float>& gauss,
             const carray<int32_t>& ams_col, const carray<float>& ams_sign,
             const carray<int32_t>& fp_idx, const carray<float>& fp_sign, int64_t reps, int64_t k,
             int64_t p, int64_t final_dim, bool document, bool fill, bool ams) {
              require_ndim(x, 2, "points");
              require_ndim(offsets, 1, "offsets");
              const int64_t d = x.shape(1);
              check_sizes(d, reps, k, p);
              require(ams || p == d, "identity projection needs p == dimension");
              const int64_t batch = offsets.shape(0) - 1;
              require(batch >= 0, "offsets must hold batch + 1 entries");
              const int64_t* off = offsets.data();
              require(off[0] == 0 && off[batch] == x.shape(0), "offsets must run from 0 to the number of rows");
              for (int64_t c = 0; c < batch; ++c) require(off[c + 1] >= off[c], "offsets must not decrease");
              FdeParams P;
              std::vector<float> gpad, osign;
              std::vector<int32_t> ord, starts;
              P.d = d;
              P.reps = reps;
              P.k = k;
              P.p = p;
              P.document = document;
              P.fill = fill && document;
              P.ams = ams;
              if (k > 0) {
                  require(gauss.ndim() == 2 && gauss.shape(0) == d && gauss.shape(1) == reps * k,
                          "gauss must be (dimension, reps * k)");
                  P.gauss_ld = (reps * k + 15) / 16 * 16;
                  gpad.assign(static_cast<size_t>(d * P.gauss_ld), 0.0f);
                  for (int64_t i = 0; i < d; ++i)
                      for (int64_t j = 0; j < reps * k; ++j)
                          gpad[i * P.gauss_ld + j] = gauss.data()[i * reps * k + j];
                  P.gauss = gpad.data();
              }
              if (ams) {
                  require(ams_col.size() == reps * d && ams_sign.size() == reps * d,
                          "ams tables must be (reps, dimension)");
                  const int32_t* c = ams_col.data();
                  for (int64_t i = 0; i < reps * d; ++i) require(c[i] >= 0 && c[i] < p, "ams column out of range");
                  P.ams_col = c;
                  P.ams_sign = ams_sign.data();
                  // group each repetition's coordinates by output column (stable: ascending i)
                  ord.resize(static_cast<size_t>(reps * d));
                  osign.resize(static_cast<size_t>(reps * d));
                  starts.assign(static_cast<size_t>(reps * (p + 1)), 0);
                  for (int64_t r = 0; r < reps; ++r) {
                      int32_t* st = starts.data() + r * (p + 1);
                      for (int64_t i = 0; i < d; ++i) ++st[c[r * d + i] + 1];
                      for (int64_t j = 0; j < p; ++j) st[j + 1] += st[j];
                      std::vector<int32_t> fillpos(st, st + p);
                      for (int64_t i = 0; i < d; ++i) {
                          const int32_t pos = fillpos[c[r * d + i]]++;
                          ord[r * d + pos] = static_cast<int32_t>(i);
                          osign[r * d + pos] = ams_sign.data()[r * d + i];
                      }
                  }
                  P.ams_order = ord.data();
                  P.ams_osign = osign.data();
                  P.ams_start = starts.data();
              }
              if (final_dim > 0) {
                  require(fp_idx.size() == P.inner_dim() && fp_sign.size() == P.inner_dim(),
                          "final projection tables must have the FDE's length");
                  const int32_t* c = fp_idx.data();
                  for (int64_t i = 0; i < P.inner_dim(); ++i)
                      require(c[i] >= 0 && c[i] < final_dim, "final projection index out of range");
                  P.final_dim = final_dim;
                  P.fp_idx = c;
                  P.fp_sign = fp_sign.data();
              }
              py::array_t<float> out = output_pool::new_output<float>(batch, P.out_dim());
              {
                  py::gil_scoped_release nogil;
                  fde::encode(P, x.data(), off, batch, out.mutable_data());
              }
              return out;
          });
}

}  // namespace embkern::bindings
