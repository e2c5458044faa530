// Python bindings of the MUVERA FDE CUDA kernels (embkern._cuda.fde): the launcher on device
// pointers, and its host emulation (numpy in, numpy out) for tests without a GPU. The Python layer
// (embkern/_cuda_ops/fde.py) validates arguments and builds the device tables.
#include "cuda/common/bindings.hpp"
#include "cuda/fde/fde_cuda.hpp"

namespace embkern::cuda {

using namespace bind;
namespace ek = embkern::cuda;

namespace {

ek::FdeShape make_shape(int64_t d, int64_t reps, int64_t k, int64_t p, int64_t final_dim, bool document,
                        bool fill, bool ams) {
    ek::FdeShape s;
    s.d = d;
    s.reps = reps;
    s.k = k;
    s.p = p;
    s.final_dim = final_dim;
    s.document = document;
    s.fill = fill;
    s.ams = ams;
    return s;
}

ek::FdeOptions make_options(int threads, int64_t group_rows, int stage, int keys, int64_t tile,
                            int64_t vbuf_floats, int64_t keys_bytes, int64_t stage_bytes,
                            int64_t scratch_bytes, int64_t max_grid) {
    ek::FdeOptions o;
    if (threads > 0) o.threads = threads;
    if (group_rows > 0) o.group_rows = group_rows;
    o.stage = stage;
    o.keys = keys;
    o.tile = tile;
    if (vbuf_floats > 0) o.vbuf_floats = vbuf_floats;
    if (keys_bytes >= 0) o.keys_bytes = keys_bytes;
    if (stage_bytes >= 0) o.stage_bytes = stage_bytes;
    if (scratch_bytes > 0) o.scratch_bytes = scratch_bytes;
    o.max_grid = max_grid;
    return o;
}

void require_ranges(const carray<int64_t>& begin, const carray<int64_t>& end) {
    require(begin.ndim() == 1 && end.ndim() == 1 && begin.shape(0) == end.shape(0),
            "begin and end must be 1-D arrays of one entry per point cloud");
}

template <class T>
const T* data_or_null(const carray<T>& a) {
    return a.size() ? a.data() : nullptr;
}

}  // namespace

void bind_fde(py::module_ m) {
    m.def("encode", [](uptr x, int64_t rows, const carray<int64_t>& begin, const carray<int64_t>& end,
                       int64_t d, int64_t reps, int64_t k, int64_t p, int64_t final_dim, bool document,
                       bool fill, bool ams, uptr gauss, uptr ams_order, uptr ams_osign, uptr ams_start,
                       uptr fp_order, uptr fp_osign, uptr fp_start, uptr out, uptr bad, uptr stream,
                       int device, int threads, int64_t group_rows, int stage, int keys, int64_t tile,
                       int64_t vbuf_floats, int64_t keys_bytes, int64_t stage_bytes,
                       int64_t scratch_bytes, int64_t max_grid) {
        require_ranges(begin, end);
        const ek::FdeShape s = make_shape(d, reps, k, p, final_dim, document, fill, ams);
        ek::FdeTables t;
        t.gauss = in_ptr<float>(gauss);
        t.ams_order = in_ptr<int32_t>(ams_order);
        t.ams_osign = in_ptr<float>(ams_osign);
        t.ams_start = in_ptr<int32_t>(ams_start);
        t.fp_order = in_ptr<int32_t>(fp_order);
        t.fp_osign = in_ptr<float>(fp_osign);
        t.fp_start = in_ptr<int32_t>(fp_start);
        const ek::FdeOptions o = make_options(threads, group_rows, stage, keys, tile, vbuf_floats, keys_bytes,
                                              stage_bytes, scratch_bytes, max_grid);
        const int64_t* b = begin.data();
        const int64_t* e = end.data();
        const int64_t batch = begin.shape(0);
        py::gil_scoped_release nogil;
        ek::fde_encode(in_ptr<float>(x), rows, b, e, batch, s, t, out_ptr<float>(out),
                       out_ptr<uint32_t>(bad), stream, device, o);
    }, py::arg("x"), py::arg("rows"), py::arg("begin"), py::arg("end"), py::arg("d"), py::arg("reps"),
       py::arg("k"), py::arg("p"), py::arg("final_dim"), py::arg("document"), py::arg("fill"),
       py::arg("ams"), py::arg("gauss"), py::arg("ams_order"), py::arg("ams_osign"),
       py::arg("ams_start"), py::arg("fp_order"), py::arg("fp_osign"), py::arg("fp_start"),
       py::arg("out"), py::arg("bad"), py::arg("stream") = 0, py::arg("device") = -1,
       py::arg("threads") = 0, py::arg("group_rows") = 0, py::arg("stage") = -1, py::arg("keys") = -1,
       py::arg("tile") = 0, py::arg("vbuf_floats") = 0, py::arg("keys_bytes") = -1,
       py::arg("stage_bytes") = -1, py::arg("scratch_bytes") = 0, py::arg("max_grid") = 0,
       "out[batch, out_dim] float32 = FDEs of the clouds x[begin[c]:end[c]] (begin/end: host int64); "
       "bad: a device uint32, 0 or 0xFFFFFFFF - (first cloud with NaN/inf). Tables are device "
       "pointers (0 where the config does not use them). threads..max_grid: launch choices (tests)");

    m.def("_emulate_encode", [](const carray<float>& x, const carray<int64_t>& begin,
                                const carray<int64_t>& end, const carray<float>& gauss,
                                const carray<int32_t>& ams_order, const carray<float>& ams_osign,
                                const carray<int32_t>& ams_start, const carray<int32_t>& fp_order,
                                const carray<float>& fp_osign, const carray<int32_t>& fp_start,
                                int64_t reps, int64_t k, int64_t p, int64_t final_dim, bool document,
                                bool fill, bool ams, int threads, int64_t group_rows, int stage, int keys,
                                int64_t tile, int64_t vbuf_floats, int64_t keys_bytes,
                                int64_t stage_bytes, int64_t scratch_bytes, int64_t max_grid,
                                int sm_count) {
        require_2d(x, "points");
        require_ranges(begin, end);
        const ek::FdeShape s = make_shape(x.shape(1), reps, k, p, final_dim, document, fill, ams);
        ek::FdeTables t;
        t.gauss = data_or_null(gauss);
        t.ams_order = data_or_null(ams_order);
        t.ams_osign = data_or_null(ams_osign);
        t.ams_start = data_or_null(ams_start);
        t.fp_order = data_or_null(fp_order);
        t.fp_osign = data_or_null(fp_osign);
        t.fp_start = data_or_null(fp_start);
        const ek::FdeOptions o = make_options(threads, group_rows, stage, keys, tile, vbuf_floats, keys_bytes,
                                              stage_bytes, scratch_bytes, max_grid);
        const int64_t batch = begin.shape(0);
        require(k >= 0 && k <= 30 && reps >= 1 && p >= 1 && final_dim >= 0, "invalid FDE shape");
        require((int64_t(0x7FFFFFFF) >> k) / reps >= p, "the encoding would have more than 2^31 - 1 dimensions");
        const int64_t out_dim = final_dim > 0 ? final_dim : reps * (int64_t(1) << k) * p;
        py::array_t<float> out({batch, out_dim});
        uint32_t bad = 0;
        {
            py::gil_scoped_release nogil;
            ek::emu::fde_encode(x.data(), x.shape(0), begin.data(), end.data(), batch, s, t,
                                out.mutable_data(), &bad, o, sm_count);
        }
        return py::make_tuple(out, bad);
    }, py::arg("x"), py::arg("begin"), py::arg("end"), py::arg("gauss"), py::arg("ams_order"),
       py::arg("ams_osign"), py::arg("ams_start"), py::arg("fp_order"), py::arg("fp_osign"),
       py::arg("fp_start"), py::arg("reps"), py::arg("k"), py::arg("p"), py::arg("final_dim"),
       py::arg("document"), py::arg("fill"), py::arg("ams"), py::arg("threads") = 64,
       py::arg("group_rows") = 0, py::arg("stage") = -1, py::arg("keys") = -1, py::arg("tile") = 0,
       py::arg("vbuf_floats") = 0, py::arg("keys_bytes") = -1, py::arg("stage_bytes") = -1,
       py::arg("scratch_bytes") = 0, py::arg("max_grid") = 0, py::arg("sm_count") = 1,
       "host emulation of encode: (out float32 [batch, out_dim], bad code as in encode)");
}

}  // namespace embkern::cuda
