// The per-atom segment reduction shared by coord_score_cpu.cpp and langevin_step_cpu.cpp.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>

namespace confgf_fast {
namespace cpu {

// Atoms per parallel chunk: a row is ~10 edges (~100 flops), so chunks below a few thousand
// atoms cost more in OpenMP fork/join than they save.
constexpr int64_t kAtomGrain = 2048;
constexpr int64_t kEdgeGrain = 16384;

// S_i = sum_{e in [e0, e1)} s_e (r_i - r_dst(e)) / d_e over the CSR row of atom i.
// Edges in the row are visited in storage order, so the result does not depend on the thread
// count (deterministic). An edge with d_e == 0 has no direction and adds nothing (the reference's
// convention), instead of the NaN that 0/0 would give.
template <typename scalar_t>
inline void atom_score(const scalar_t* __restrict__ pos,    // [N, 3]
                       const int64_t* __restrict__ dst,     // [E]
                       const scalar_t* __restrict__ score,  // [E]
                       int64_t i, int64_t e0, int64_t e1, scalar_t out[3]) {
  const scalar_t xi = pos[3 * i], yi = pos[3 * i + 1], zi = pos[3 * i + 2];
  scalar_t sx = 0, sy = 0, sz = 0;
  for (int64_t e = e0; e < e1; ++e) {
    const int64_t j = dst[e];
    const scalar_t dx = xi - pos[3 * j], dy = yi - pos[3 * j + 1], dz = zi - pos[3 * j + 2];
    const scalar_t d = std::sqrt(dx * dx + dy * dy + dz * dz);
    const scalar_t w = d > scalar_t(0) ? score[e] / d : scalar_t(0);
    sx += w * dx;
    sy += w * dy;
    sz += w * dz;
  }
  out[0] = sx;
  out[1] = sy;
  out[2] = sz;
}

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
