// pairwise_distance on CUDA: one thread per edge, d_e = |r_src(e) - r_dst(e)|.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../checks.h"
#include "../kernel_math.h"
#include "csr_rows.cuh"

namespace confgf_fast {
namespace {

template <typename scalar_t>
__global__ void pairwise_distance_kernel(const scalar_t* __restrict__ pos,  // [N, 3]
                                         const int64_t* __restrict__ src,   // [E]
                                         const int64_t* __restrict__ dst,   // [E]
                                         scalar_t* __restrict__ out,        // [E]
                                         int64_t E, int64_t N) {
  const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= E) return;
  // Always on (issue 26): an index outside [0, N) stops the kernel (device-side assert, no host
  // sync; see csr_rows.cuh for why an assert rather than an error flag).
  CUDA_KERNEL_ASSERT(src[e] >= 0 && src[e] < N && dst[e] >= 0 && dst[e] < N);
  out[e] = edge_length(pos, src[e], dst[e]);
}

at::Tensor pairwise_distance_cuda(const at::Tensor& pos,          // [N, 3]
                                  const at::Tensor& edge_index) {  // [2, E] int64
  check_pos(pos);
  check_edge_index(edge_index, pos);
  const c10::cuda::CUDAGuard guard(pos.device());
  const at::Tensor pos_c = pos.contiguous();
  const at::Tensor ei = edge_index.contiguous();
  const int64_t E = ei.size(1);
  at::Tensor out = at::empty({E}, pos_c.options());
  if (E == 0) return out;
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(pos_c.scalar_type(), "pairwise_distance_cuda", [&] {
    const int64_t* src = ei.const_data_ptr<int64_t>();
    pairwise_distance_kernel<scalar_t><<<cuda::num_blocks(E), cuda::kThreads, 0, stream>>>(
        pos_c.const_data_ptr<scalar_t>(), src, src + E, out.mutable_data_ptr<scalar_t>(), E, pos_c.size(0));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(confgf_fast, CUDA, m) { m.impl("pairwise_distance", &pairwise_distance_cuda); }

}  // namespace confgf_fast
