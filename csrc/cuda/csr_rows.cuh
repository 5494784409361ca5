// How the CUDA kernels find each atom's CSR row of edges (one thread per atom), and the
// device-side checks that keep them inside their tensors. The arithmetic done on a row is in
// ../kernel_math.h, shared with the CPU kernels.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/macros/Macros.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <optional>

namespace confgf_fast {
namespace cuda {

// One thread per atom: a row is ~10 edges on molecular graphs, too short to split over a warp.
constexpr int kThreads = 256;

inline int64_t num_blocks(int64_t n) { return (n + kThreads - 1) / kThreads; }

// The caller's rowptr, or one built on `stream` from the sorted sources (one O(E) launch into a
// caching-allocator buffer: no host sync, so still safe under CUDA graph capture). Building it
// device-asserts that the sources are sorted and inside [0, N). Defined in csr_rows.cu (one
// definition of the kernel for the whole library).
at::Tensor rowptr_or_build(const std::optional<at::Tensor>& rowptr,  // [N+1] or None
                           const at::Tensor& src,                    // [E] contiguous
                           int64_t N, cudaStream_t stream);

// Device-side checks of one atom's row before a kernel reads through it, always on (issue 26).
// CUDA_KERNEL_ASSERT, as ATen's indexing kernels: no host sync, so legal inside CUDA graphs, where
// the Python validation of confgf_fast.ops cannot run; an error flag would need a sync to be read.
// A failed assert stops the kernel and poisons the CUDA context, which is why the Python
// validation (on by default) runs first in eager calls and raises a ValueError instead.
// Checked per row [e0, e1) of atom i: 0 <= e0 <= e1 <= E; every dst (and edge_pair) index in range;
// with a caller's rowptr also rowptr[0] == 0, rowptr[N] == E and src == i at the row's first and
// last edge (a built rowptr is right by construction). The indices are re-read from L1: the thread
// loads them for its row anyway, so the cost is instructions, not DRAM traffic.
struct RowCheck {
  const int64_t* src;   // [E]
  const int64_t* dst;   // [E]
  const int64_t* pair;  // [E] or nullptr
  int64_t N, E, P;      // atoms, edges, pairs (P unused without pair)
  bool caller_rows;     // rowptr came from the caller (not built from src here)

  __device__ __forceinline__ void row(const int64_t* __restrict__ rowptr, int64_t i) const {
    const int64_t e0 = rowptr[i], e1 = rowptr[i + 1];
    CUDA_KERNEL_ASSERT(0 <= e0 && e0 <= e1 && e1 <= E);
    if (caller_rows) {
      CUDA_KERNEL_ASSERT(i != 0 || e0 == 0);
      CUDA_KERNEL_ASSERT(i != N - 1 || e1 == E);
      CUDA_KERNEL_ASSERT(e0 == e1 || (src[e0] == i && src[e1 - 1] == i));
    }
    for (int64_t e = e0; e < e1; ++e) {
      CUDA_KERNEL_ASSERT(dst[e] >= 0 && dst[e] < N);
      if (pair != nullptr) CUDA_KERNEL_ASSERT(pair[e] >= 0 && pair[e] < P);
    }
  }
};

inline RowCheck row_check(const at::Tensor& ei,  // [2, E] contiguous
                          const std::optional<at::Tensor>& rowptr, int64_t N, const int64_t* pair = nullptr,
                          int64_t P = 0) {
  const int64_t E = ei.size(1);
  const int64_t* src = ei.const_data_ptr<int64_t>();
  return RowCheck{src, src + E, pair, N, E, P, rowptr.has_value()};
}

}  // namespace cuda
}  // namespace confgf_fast
