// Per-atom segment reduction shared by coord_score_cuda.cu and langevin_step_cuda.cu.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <optional>

namespace confgf_fast {
namespace cuda {

__device__ __forceinline__ float sqrt_(float x) { return sqrtf(x); }
__device__ __forceinline__ double sqrt_(double x) { return sqrt(x); }

// S_i = sum_{e in [e0, e1)} s_e (r_i - r_dst(e)) / d_e, in storage order (deterministic), with
// the reference's convention that an edge with d_e == 0 contributes 0.
template <typename scalar_t>
__device__ __forceinline__ void atom_score(const scalar_t* __restrict__ pos,    // [N, 3]
                                           const int64_t* __restrict__ dst,     // [E]
                                           const scalar_t* __restrict__ score,  // [E]
                                           int64_t i, int64_t e0, int64_t e1, scalar_t& sx, scalar_t& sy,
                                           scalar_t& sz) {
  const scalar_t xi = pos[3 * i], yi = pos[3 * i + 1], zi = pos[3 * i + 2];
  sx = sy = sz = scalar_t(0);
  for (int64_t e = e0; e < e1; ++e) {
    const int64_t j = __ldg(dst + e);
    const scalar_t dx = xi - __ldg(pos + 3 * j), dy = yi - __ldg(pos + 3 * j + 1), dz = zi - __ldg(pos + 3 * j + 2);
    const scalar_t d = sqrt_(dx * dx + dy * dy + dz * dz);
    const scalar_t w = d > scalar_t(0) ? __ldg(score + e) / d : scalar_t(0);
    sx += w * dx;
    sy += w * dy;
    sz += w * dz;
  }
}

// One thread per atom: a row is ~10 edges on molecular graphs, too short to split over a warp.
constexpr int kThreads = 256;

inline int64_t num_blocks(int64_t n) { return (n + kThreads - 1) / kThreads; }

namespace {

// rowptr[a] = first edge e with src[e] >= a, for a in [0, N]; rowptr[N] = E.
// Thread e in [0, E] owns the atoms in (src[e-1], src[e]] (with src[-1] = -1, src[E] = N), so each
// entry is written exactly once: deterministic, no atomics.
__global__ void rowptr_kernel(const int64_t* __restrict__ src,  // [E], sorted
                              int64_t* __restrict__ rowptr,     // [N+1]
                              int64_t N, int64_t E) {
  const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e > E) return;
  const int64_t lo = e == 0 ? 0 : min(src[e - 1] + 1, N + 1);
  const int64_t hi = e == E ? N : min(src[e], N);
  for (int64_t a = lo; a <= hi; ++a) rowptr[a] = e;
}

}  // namespace

// The caller's rowptr, or one built on `stream` from the sorted sources (one O(E) launch into a
// caching-allocator buffer: no host sync, so still safe under CUDA graph capture).
inline at::Tensor rowptr_or_build(const std::optional<at::Tensor>& rowptr,  // [N+1] or None
                                  const at::Tensor& src,                    // [E] contiguous
                                  int64_t N, cudaStream_t stream) {
  if (rowptr.has_value()) return rowptr->contiguous();
  const int64_t E = src.size(0);
  at::Tensor rp = at::empty({N + 1}, src.options());
  rowptr_kernel<<<num_blocks(E + 1), kThreads, 0, stream>>>(src.const_data_ptr<int64_t>(),
                                                             rp.mutable_data_ptr<int64_t>(), N, E);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return rp;
}

}  // namespace cuda
}  // namespace confgf_fast
