// gine_aggregate on the CPU: the GINE neighbourhood sum of the score network,
//   out_i = h_i + sum_{e in row i} ReLU(h_dst(e) + a_pair(e)),
// with the edge features read through edge_pair (one row per undirected atom pair) instead of an
// [E, H] copy, and its backward. Rows are CSR segments of the source-sorted edges (OpenMP over
// atoms, no atomics, deterministic), as in the other CPU kernels.
//
// Why a kernel: in PyTorch this is gather(a, pair) + gather(h, dst) + add + relu + index_add,
// five passes over [E, H] arrays that each leave memory; training spends ~30 % of its time there.
// Here every [E, H] quantity lives in registers for one edge at a time.
//
// The backward uses the pairing: each pair p is used by exactly two edges, (u, v) and (v, u), so
//   grad_h_j = g_j + sum_{e in row j} g_dst(e) * [h_j + a_pair(e) > 0]   (the reverse edge's
//              message ReLU(h_j + a_p) went to dst(e)'s row),
//   grad_a_p = g_u [h_v + a_p > 0] + g_v [h_u + a_p > 0],
// the second one written by the row of min(u, v) only, so each pair has one writer.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros_like.h>
#include <torch/library.h>

#include <optional>
#include <tuple>

#include "../checks.h"
#include "../kernel_math.h"
#include "csr_rows.h"

namespace confgf_fast {
namespace {

// Rows per parallel chunk: a row is ~10 edges x H (~128) features, ~40x the work of a
// coord_score row, so chunks can be that much smaller.
constexpr int64_t kNodeGrain = 64;

at::Tensor gine_aggregate_cpu(const at::Tensor& h,                       // [N, H]
                              const at::Tensor& edge_index,              // [2, E] int64, sorted by source
                              const at::Tensor& edge_attr,               // [E/2, H]
                              const at::Tensor& edge_pair,               // [E] int64 in [0, E/2)
                              const std::optional<at::Tensor>& rowptr) {  // [N+1] int64
  check_node_features(h, edge_index, edge_attr, edge_pair);
  check_rowptr(rowptr, h);
  const at::Tensor hc = h.contiguous();
  const at::Tensor ac = edge_attr.contiguous();
  const at::Tensor ei = edge_index.contiguous();
  const at::Tensor pair = edge_pair.contiguous();
  const int64_t N = hc.size(0), H = hc.size(1), E = ei.size(1);
  const at::Tensor rp = cpu::contiguous_rowptr(rowptr, N, E);
  at::Tensor out = at::empty_like(hc);
  AT_DISPATCH_FLOATING_TYPES(hc.scalar_type(), "gine_aggregate_cpu", [&] {
    const scalar_t* hp = hc.const_data_ptr<scalar_t>();
    const scalar_t* ap = ac.const_data_ptr<scalar_t>();
    const int64_t* src = ei.const_data_ptr<int64_t>();
    const int64_t* dst = src + E;
    const int64_t* pr = pair.const_data_ptr<int64_t>();
    const int64_t* r = rp.defined() ? rp.const_data_ptr<int64_t>() : nullptr;
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    cpu::GraphCheck check(N, E, ac.size(0));
    at::parallel_for(0, N, kNodeGrain, [&](int64_t begin, int64_t end) {
      cpu::for_each_row(r, src, dst, pr, E, begin, end, check, [&](int64_t i, int64_t e0, int64_t e1) {
        scalar_t* __restrict__ oi = o + i * H;
        const scalar_t* __restrict__ hi = hp + i * H;
        for (int64_t k = 0; k < H; ++k) oi[k] = hi[k];
        for (int64_t e = e0; e < e1; ++e) {
          const scalar_t* __restrict__ hj = hp + dst[e] * H;
          const scalar_t* __restrict__ a = ap + pr[e] * H;
          for (int64_t k = 0; k < H; ++k) oi[k] += gine_message(hj[k], a[k]);
        }
      });
    });
    check.raise_if_bad("gine_aggregate");
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> gine_aggregate_backward_cpu(const at::Tensor& grad_out,  // [N, H]
                                                               const at::Tensor& h,         // [N, H]
                                                               const at::Tensor& edge_index,
                                                               const at::Tensor& edge_attr,  // [E/2, H]
                                                               const at::Tensor& edge_pair,  // [E]
                                                               const std::optional<at::Tensor>& rowptr) {
  check_node_features(h, edge_index, edge_attr, edge_pair);
  check_rowptr(rowptr, h);
  TORCH_CHECK(grad_out.sizes() == h.sizes(), "grad_out must have the shape of h ", h.sizes(), ", got ",
              grad_out.sizes());
  const at::Tensor hc = h.contiguous();
  const at::Tensor g = grad_out.to(hc.scalar_type()).contiguous();
  const at::Tensor ac = edge_attr.contiguous();
  const at::Tensor ei = edge_index.contiguous();
  const at::Tensor pair = edge_pair.contiguous();
  const int64_t N = hc.size(0), H = hc.size(1), E = ei.size(1);
  const at::Tensor rp = cpu::contiguous_rowptr(rowptr, N, E);
  at::Tensor grad_h = at::empty_like(hc);
  // zeros: a pair index that no edge uses (only possible with a malformed pairing) gets no gradient
  at::Tensor grad_a = at::zeros_like(ac);
  AT_DISPATCH_FLOATING_TYPES(hc.scalar_type(), "gine_aggregate_backward_cpu", [&] {
    const scalar_t* hp = hc.const_data_ptr<scalar_t>();
    const scalar_t* gp = g.const_data_ptr<scalar_t>();
    const scalar_t* ap = ac.const_data_ptr<scalar_t>();
    const int64_t* src = ei.const_data_ptr<int64_t>();
    const int64_t* dst = src + E;
    const int64_t* pr = pair.const_data_ptr<int64_t>();
    const int64_t* r = rp.defined() ? rp.const_data_ptr<int64_t>() : nullptr;
    scalar_t* gh = grad_h.mutable_data_ptr<scalar_t>();
    scalar_t* ga = grad_a.mutable_data_ptr<scalar_t>();
    cpu::GraphCheck check(N, E, ac.size(0));
    at::parallel_for(0, N, kNodeGrain, [&](int64_t begin, int64_t end) {
      cpu::for_each_row(r, src, dst, pr, E, begin, end, check, [&](int64_t i, int64_t e0, int64_t e1) {
        scalar_t* __restrict__ ghi = gh + i * H;
        const scalar_t* __restrict__ hi = hp + i * H;
        const scalar_t* __restrict__ gi = gp + i * H;
        for (int64_t k = 0; k < H; ++k) ghi[k] = gi[k];
        for (int64_t e = e0; e < e1; ++e) {
          const int64_t j = dst[e];
          const scalar_t* __restrict__ hj = hp + j * H;
          const scalar_t* __restrict__ gj = gp + j * H;
          const scalar_t* __restrict__ a = ap + pr[e] * H;
          // message of the reverse edge (j, i): ReLU(h_i + a_p), summed into row j
          for (int64_t k = 0; k < H; ++k) ghi[k] += gine_message_grad(hi[k], a[k], gj[k]);
          if (i < j) {  // this row owns pair p: both directions' contributions to grad_a_p
            scalar_t* __restrict__ gap = ga + pr[e] * H;
            for (int64_t k = 0; k < H; ++k) {
              gap[k] = gine_message_grad(hj[k], a[k], gi[k]) + gine_message_grad(hi[k], a[k], gj[k]);
            }
          }
        }
      });
    });
    check.raise_if_bad("gine_aggregate_backward");
  });
  return {grad_h, grad_a};
}

}  // namespace

TORCH_LIBRARY_IMPL(confgf_fast, CPU, m) {
  m.impl("gine_aggregate", &gine_aggregate_cpu);
  m.impl("gine_aggregate_backward", &gine_aggregate_backward_cpu);
}

}  // namespace confgf_fast
