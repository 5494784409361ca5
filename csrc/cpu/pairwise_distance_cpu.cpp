// pairwise_distance on the CPU: d_e = |r_src(e) - r_dst(e)|, OpenMP-parallel over edges.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include "../checks.h"
#include "../kernel_math.h"
#include "csr_rows.h"

namespace confgf_fast {
namespace {

at::Tensor pairwise_distance_cpu(const at::Tensor& pos,          // [N, 3]
                                 const at::Tensor& edge_index) {  // [2, E] int64
  check_pos(pos);
  check_edge_index(edge_index, pos);
  const at::Tensor pos_c = pos.contiguous();
  const at::Tensor ei = edge_index.contiguous();
  const int64_t E = ei.size(1);
  at::Tensor out = at::empty({E}, pos_c.options());
  AT_DISPATCH_FLOATING_TYPES(pos_c.scalar_type(), "pairwise_distance_cpu", [&] {
    const scalar_t* p = pos_c.const_data_ptr<scalar_t>();
    const int64_t* src = ei.const_data_ptr<int64_t>();
    const int64_t* dst = src + E;
    scalar_t* d = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, E, cpu::kEdgeGrain, [&](int64_t begin, int64_t end) {
      for (int64_t e = begin; e < end; ++e) {
        d[e] = edge_length(p, src[e], dst[e]);
      }
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(confgf_fast, CPU, m) { m.impl("pairwise_distance", &pairwise_distance_cpu); }

}  // namespace confgf_fast
