// langevin_step on CUDA, fused: one thread per atom computes its score over its CSR row
// (distances + chain rule), clips it to norm <= clip and writes r + a*S + sqrt(2a)*noise to a new
// buffer. One launch, no atomics, no host sync (safe under CUDA graph capture).
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cmath>
#include <optional>

#include "../checks.h"
#include "../kernel_math.h"
#include "csr_rows.cuh"

namespace confgf_fast {
namespace {

template <typename scalar_t>
__global__ void langevin_step_kernel(const scalar_t* __restrict__ pos,    // [N, 3]
                                     const int64_t* __restrict__ dst,     // [E]
                                     const scalar_t* __restrict__ score,  // [E]
                                     const scalar_t* __restrict__ noise,  // [N, 3]
                                     const int64_t* __restrict__ rowptr,  // [N+1]
                                     scalar_t* __restrict__ out,          // [N, 3]
                                     int64_t N, scalar_t a, scalar_t noise_scale, scalar_t limit,
                                     cuda::RowCheck check) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= N) return;
  check.row(rowptr, i);
  scalar_t S[3];
  atom_score(pos, dst, score, i, rowptr[i], rowptr[i + 1], S);
  langevin_update(pos + 3 * i, S, noise + 3 * i, a, noise_scale, limit, out + 3 * i);
}

at::Tensor langevin_step_cuda(const at::Tensor& pos,         // [N, 3]
                              const at::Tensor& edge_index,  // [2, E] int64, sorted by source
                              const at::Tensor& edge_score,  // [E]
                              const at::Tensor& noise,       // [N, 3]
                              const std::optional<at::Tensor>& rowptr,  // [N+1] int64 or None
                              double step_size, double clip) {
  check_langevin_step_args(pos, edge_index, edge_score, noise, rowptr, step_size, clip);
  const c10::cuda::CUDAGuard guard(pos.device());
  const at::Tensor pos_c = pos.contiguous();
  const at::Tensor ei = edge_index.contiguous();
  const at::Tensor score = edge_score.to(pos_c.scalar_type()).contiguous();
  const at::Tensor noise_c = noise.to(pos_c.scalar_type()).contiguous();
  const int64_t N = pos_c.size(0);
  at::Tensor out = at::empty_like(pos_c);
  if (N == 0) return out;
  const auto stream = c10::cuda::getCurrentCUDAStream();
  const at::Tensor rp = cuda::rowptr_or_build(rowptr, ei[0], N, stream);
  AT_DISPATCH_FLOATING_TYPES(pos_c.scalar_type(), "langevin_step_cuda", [&] {
    langevin_step_kernel<scalar_t><<<cuda::num_blocks(N), cuda::kThreads, 0, stream>>>(
        pos_c.const_data_ptr<scalar_t>(), ei.const_data_ptr<int64_t>() + ei.size(1), score.const_data_ptr<scalar_t>(),
        noise_c.const_data_ptr<scalar_t>(), rp.const_data_ptr<int64_t>(), out.mutable_data_ptr<scalar_t>(), N,
        static_cast<scalar_t>(step_size), static_cast<scalar_t>(std::sqrt(2.0 * step_size)),
        static_cast<scalar_t>(clip), cuda::row_check(ei, rowptr, N));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(confgf_fast, CUDA, m) { m.impl("langevin_step", &langevin_step_cuda); }

}  // namespace confgf_fast
