// gine_aggregate on CUDA: the GINE neighbourhood sum of the score network and its backward,
//   out_i = h_i + sum_{e in row i} ReLU(h_dst(e) + a_pair(e)),
// with the same math and the same summation order as gine_aggregate_cpu.cpp (the per-feature
// arithmetic is ../kernel_math.h's gine_message / gine_message_grad; see the CPU file for the
// derivation of the backward).
//
// One thread per (atom i, feature k): a warp covers 32 consecutive features of one atom (for
// H >= 32), so every load of h_dst(e), a_pair(e) and g_dst(e) is one coalesced 128-byte row
// segment, and the row's edge ids are warp-wide broadcasts. Each thread walks its atom's CSR row in
// storage order and owns its output element: no atomics, deterministic, bit-identical to the CPU
// kernel (sums of the same terms in the same order, no multiplications to contract into FMAs).
// grad_a_p is written by the row of min(u, v) only, so each pair has one writer (as on the CPU).
// One launch per call and no host sync: safe under CUDA graph capture.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros_like.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <optional>
#include <tuple>

#include "../checks.h"
#include "../kernel_math.h"
#include "csr_rows.cuh"

namespace confgf_fast {
namespace {

template <typename scalar_t>
__global__ void gine_aggregate_kernel(const scalar_t* __restrict__ h,      // [N, H]
                                      const scalar_t* __restrict__ attr,   // [P, H]
                                      const int64_t* __restrict__ dst,     // [E]
                                      const int64_t* __restrict__ pair,    // [E]
                                      const int64_t* __restrict__ rowptr,  // [N+1]
                                      scalar_t* __restrict__ out,          // [N, H]
                                      int64_t N, int64_t H, cuda::RowCheck check) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= N * H) return;
  const int64_t i = t / H, k = t - i * H;
  check.row(rowptr, i);  // every thread of the row checks it (warp-broadcast loads, no extra traffic)
  const int64_t e1 = rowptr[i + 1];
  scalar_t acc = h[t];
  for (int64_t e = rowptr[i]; e < e1; ++e) {
    acc += gine_message(load_ro(h + load_ro(dst + e) * H + k), load_ro(attr + load_ro(pair + e) * H + k));
  }
  out[t] = acc;
}

template <typename scalar_t>
__global__ void gine_aggregate_backward_kernel(const scalar_t* __restrict__ g,       // [N, H] grad_out
                                               const scalar_t* __restrict__ h,       // [N, H]
                                               const scalar_t* __restrict__ attr,    // [P, H]
                                               const int64_t* __restrict__ dst,      // [E]
                                               const int64_t* __restrict__ pair,     // [E]
                                               const int64_t* __restrict__ rowptr,   // [N+1]
                                               scalar_t* __restrict__ grad_h,        // [N, H]
                                               scalar_t* __restrict__ grad_a,        // [P, H], zeroed
                                               int64_t N, int64_t H, cuda::RowCheck check) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= N * H) return;
  const int64_t i = t / H, k = t - i * H;
  check.row(rowptr, i);  // every thread of the row checks it (warp-broadcast loads, no extra traffic)
  const int64_t e1 = rowptr[i + 1];
  const scalar_t h_ik = h[t], g_ik = g[t];
  scalar_t acc = g_ik;
  for (int64_t e = rowptr[i]; e < e1; ++e) {
    const int64_t j = load_ro(dst + e), p = load_ro(pair + e);
    const scalar_t a = load_ro(attr + p * H + k);
    const scalar_t g_jk = load_ro(g + j * H + k);
    // message of the reverse edge (j, i): ReLU(h_i + a_p), summed into row j
    acc += gine_message_grad(h_ik, a, g_jk);
    if (i < j) {  // this row owns pair p: both directions' contributions to grad_a_p
      grad_a[p * H + k] = gine_message_grad(load_ro(h + j * H + k), a, g_ik) + gine_message_grad(h_ik, a, g_jk);
    }
  }
  grad_h[t] = acc;
}

at::Tensor gine_aggregate_cuda(const at::Tensor& h,                       // [N, H]
                               const at::Tensor& edge_index,              // [2, E] int64, sorted by source
                               const at::Tensor& edge_attr,               // [E/2, H]
                               const at::Tensor& edge_pair,               // [E] int64 in [0, E/2)
                               const std::optional<at::Tensor>& rowptr) {  // [N+1] int64 or None
  check_node_features(h, edge_index, edge_attr, edge_pair);
  check_rowptr(rowptr, h);
  const c10::cuda::CUDAGuard guard(h.device());
  const at::Tensor hc = h.contiguous();
  const at::Tensor ac = edge_attr.contiguous();
  const at::Tensor ei = edge_index.contiguous();
  const at::Tensor pr = edge_pair.contiguous();
  const int64_t N = hc.size(0), H = hc.size(1), E = ei.size(1);
  at::Tensor out = at::empty_like(hc);
  if (N * H == 0) return out;
  const auto stream = c10::cuda::getCurrentCUDAStream();
  const at::Tensor rp = cuda::rowptr_or_build(rowptr, ei[0], N, stream);
  AT_DISPATCH_FLOATING_TYPES(hc.scalar_type(), "gine_aggregate_cuda", [&] {
    gine_aggregate_kernel<scalar_t><<<cuda::num_blocks(N * H), cuda::kThreads, 0, stream>>>(
        hc.const_data_ptr<scalar_t>(), ac.const_data_ptr<scalar_t>(), ei.const_data_ptr<int64_t>() + E,
        pr.const_data_ptr<int64_t>(), rp.const_data_ptr<int64_t>(), out.mutable_data_ptr<scalar_t>(), N, H,
        cuda::row_check(ei, rowptr, N, pr.const_data_ptr<int64_t>(), ac.size(0)));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> gine_aggregate_backward_cuda(const at::Tensor& grad_out,   // [N, H]
                                                                const at::Tensor& h,          // [N, H]
                                                                const at::Tensor& edge_index,  // [2, E]
                                                                const at::Tensor& edge_attr,  // [E/2, H]
                                                                const at::Tensor& edge_pair,  // [E]
                                                                const std::optional<at::Tensor>& rowptr) {
  check_node_features(h, edge_index, edge_attr, edge_pair);
  check_rowptr(rowptr, h);
  TORCH_CHECK(grad_out.sizes() == h.sizes(), "grad_out must have the shape of h ", h.sizes(), ", got ",
              grad_out.sizes());
  TORCH_CHECK(grad_out.device() == h.device(), "grad_out is on ", grad_out.device(), " but h is on ", h.device());
  const c10::cuda::CUDAGuard guard(h.device());
  const at::Tensor hc = h.contiguous();
  const at::Tensor g = grad_out.to(hc.scalar_type()).contiguous();
  const at::Tensor ac = edge_attr.contiguous();
  const at::Tensor ei = edge_index.contiguous();
  const at::Tensor pr = edge_pair.contiguous();
  const int64_t N = hc.size(0), H = hc.size(1), E = ei.size(1);
  at::Tensor grad_h = at::empty_like(hc);
  // zeros: a pair index that no edge uses (only possible with a malformed pairing) gets no gradient
  at::Tensor grad_a = at::zeros_like(ac);
  if (N * H == 0) return {grad_h, grad_a};
  const auto stream = c10::cuda::getCurrentCUDAStream();
  const at::Tensor rp = cuda::rowptr_or_build(rowptr, ei[0], N, stream);
  AT_DISPATCH_FLOATING_TYPES(hc.scalar_type(), "gine_aggregate_backward_cuda", [&] {
    gine_aggregate_backward_kernel<scalar_t><<<cuda::num_blocks(N * H), cuda::kThreads, 0, stream>>>(
        g.const_data_ptr<scalar_t>(), hc.const_data_ptr<scalar_t>(), ac.const_data_ptr<scalar_t>(),
        ei.const_data_ptr<int64_t>() + E, pr.const_data_ptr<int64_t>(), rp.const_data_ptr<int64_t>(),
        grad_h.mutable_data_ptr<scalar_t>(), grad_a.mutable_data_ptr<scalar_t>(), N, H,
        cuda::row_check(ei, rowptr, N, pr.const_data_ptr<int64_t>(), ac.size(0)));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {grad_h, grad_a};
}

}  // namespace

TORCH_LIBRARY_IMPL(confgf_fast, CUDA, m) {
  m.impl("gine_aggregate", &gine_aggregate_cuda);
  m.impl("gine_aggregate_backward", &gine_aggregate_backward_cuda);
}

}  // namespace confgf_fast
