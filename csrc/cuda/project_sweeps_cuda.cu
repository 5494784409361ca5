// project_sweeps on CUDA: `iters` damped Jacobi sweeps of stress majorisation,
//   r_i <- r_i + step_i * sum_{(i,j)} (t_ij - d_ij) (r_i - r_j) / d_ij.
// One launch per sweep, one thread per atom walking its CSR row (the arithmetic is
// stress_sweep_atom in ../kernel_math.h, shared with the CPU kernel). Kernel boundaries on one
// stream are the grid-wide barrier Jacobi needs between sweeps; two [N, 3] buffers take turns as
// the previous and the next sweep, so nothing E-length is written and there is no host sync (the
// whole call can be captured in a CUDA graph).
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <optional>

#include "../checks.h"
#include "../kernel_math.h"
#include "csr_rows.cuh"

namespace confgf_fast {
namespace {

template <typename scalar_t>
__global__ void project_sweep_kernel(const scalar_t* __restrict__ prev,    // [N, 3] previous sweep
                                     const int64_t* __restrict__ dst,      // [E]
                                     const scalar_t* __restrict__ target,  // [E]
                                     const scalar_t* __restrict__ step,    // [N]
                                     const int64_t* __restrict__ rowptr,   // [N+1]
                                     scalar_t* __restrict__ next,          // [N, 3] this sweep
                                     int64_t N, cuda::RowCheck check, bool first_sweep) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= N) return;
  if (first_sweep) check.row(rowptr, i);  // the rows do not change between sweeps
  stress_sweep_atom(prev, dst, target, step[i], i, rowptr[i], rowptr[i + 1], next);
}

at::Tensor project_sweeps_cuda(const at::Tensor& pos,                     // [N, 3]
                               const at::Tensor& edge_index,              // [2, E] int64, sorted by source
                               const at::Tensor& target,                  // [E]
                               const at::Tensor& step,                    // [N]
                               const std::optional<at::Tensor>& rowptr,  // [N+1] int64 or None
                               int64_t iters) {
  check_project_sweeps_args(pos, edge_index, target, step, rowptr, iters);
  const c10::cuda::CUDAGuard guard(pos.device());
  const at::Tensor pos_c = pos.contiguous();
  const at::Tensor ei = edge_index.contiguous();
  const at::Tensor tgt = target.to(pos_c.scalar_type()).contiguous();
  const at::Tensor stp = step.to(pos_c.scalar_type()).contiguous();
  const int64_t N = pos_c.size(0);
  at::Tensor out = at::empty_like(pos_c);
  if (N == 0) return out;
  if (iters == 0) return out.copy_(pos_c);
  const auto stream = c10::cuda::getCurrentCUDAStream();
  // Built once (one O(E) launch) when the caller has no rowptr; every sweep reuses it.
  const at::Tensor rp = cuda::rowptr_or_build(rowptr, ei[0], N, stream);
  at::Tensor spare = iters > 1 ? at::empty_like(pos_c) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(pos_c.scalar_type(), "project_sweeps_cuda", [&] {
    const int64_t* dst = ei.const_data_ptr<int64_t>() + ei.size(1);
    const scalar_t* t = tgt.const_data_ptr<scalar_t>();
    const scalar_t* a = stp.const_data_ptr<scalar_t>();
    const int64_t* r = rp.const_data_ptr<int64_t>();
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    scalar_t* o2 = spare.defined() ? spare.mutable_data_ptr<scalar_t>() : nullptr;
    const scalar_t* prev = pos_c.const_data_ptr<scalar_t>();
    const cuda::RowCheck check = cuda::row_check(ei, rowptr, N);
    for (int64_t k = 0; k < iters; ++k) {
      // Alternate buffers so that the last sweep lands in `out`, with no final copy.
      scalar_t* next = (iters - 1 - k) % 2 == 0 ? o : o2;
      project_sweep_kernel<scalar_t><<<cuda::num_blocks(N), cuda::kThreads, 0, stream>>>(prev, dst, t, a, r, next, N, check,
                                                                                          k == 0);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      prev = next;
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(confgf_fast, CUDA, m) { m.impl("project_sweeps", &project_sweeps_cuda); }

}  // namespace confgf_fast
