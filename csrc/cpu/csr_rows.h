// How the CPU kernels find each atom's CSR row of edges and spread atoms over threads. The
// arithmetic done on a row is in ../kernel_math.h, shared with the CUDA kernels.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdint>
#include <optional>

namespace confgf_fast {
namespace cpu {

// Atoms per parallel chunk: a row is ~10 edges (~100 flops), so chunks below a few thousand
// atoms cost more in OpenMP fork/join than they save.
constexpr int64_t kAtomGrain = 2048;
constexpr int64_t kEdgeGrain = 16384;

// Calls f(i, e0, e1) for each atom i in [begin, end) with its CSR row [e0, e1).
// With rowptr the rows are read from it. Without, one binary search finds the chunk's first edge
// and the rows follow by a forward scan of the sorted sources: O(log E + edges of the chunk), so a
// caller that does not keep row pointers pays nothing noticeable for it.
template <typename F>
inline void for_each_row(const int64_t* rowptr,  // [N+1] or nullptr
                         const int64_t* src,     // [E], sorted
                         int64_t E, int64_t begin, int64_t end, const F& f) {
  if (rowptr != nullptr) {
    for (int64_t i = begin; i < end; ++i) f(i, rowptr[i], rowptr[i + 1]);
    return;
  }
  int64_t e = std::lower_bound(src, src + E, begin) - src;
  for (int64_t i = begin; i < end; ++i) {
    int64_t e1 = e;
    while (e1 < E && src[e1] <= i) ++e1;
    f(i, e, e1);
    e = e1;
  }
}

// rowptr as a contiguous tensor (or undefined), after checking that it closes at E: one read, no
// pass over the data, catches a rowptr built for another edge set.
inline at::Tensor contiguous_rowptr(const std::optional<at::Tensor>& rowptr, int64_t N, int64_t E) {
  if (!rowptr.has_value()) return at::Tensor();
  at::Tensor rp = rowptr->contiguous();
  const int64_t last = rp.const_data_ptr<int64_t>()[N];
  TORCH_CHECK(last == E, "rowptr[N] must equal the number of edges E=", E, ", got ", last);
  return rp;
}

}  // namespace cpu
}  // namespace confgf_fast
