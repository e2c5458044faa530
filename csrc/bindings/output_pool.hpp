// Large results handed to Python on the process's buffer pool (common/huge_alloc.hpp).
#pragma once
#include "bindings/arrays.hpp"
#include "common/huge_alloc.hpp"

namespace embkern::bindings::output_pool {

// A fresh (M, N) result array. From kPoolMin bytes up its memory comes from the buffer pool (often
// a buffer an earlier result of the same size released) and goes back to it when the array is
// freed; every result still owns its buffer while it lives.
template <class T>
py::array_t<T> new_output(int64_t M, int64_t N) {
    const size_t bytes = static_cast<size_t>(M) * static_cast<size_t>(N) * sizeof(T);
    if (bytes < kPoolMin) return py::array_t<T>({M, N});
    struct Owned {
        void* ptr;
        size_t bytes;
    };
    Owned* blk = new Owned{buffer_pool().get(bytes), bytes};
    py::capsule owner(blk, [](void* b) {
        Owned* blk = static_cast<Owned*>(b);
        buffer_pool().put(blk->ptr, blk->bytes);
        delete blk;
    });
    return py::array_t<T>({M, N}, static_cast<T*>(blk->ptr), owner);
}

}  // namespace embkern::bindings::output_pool
