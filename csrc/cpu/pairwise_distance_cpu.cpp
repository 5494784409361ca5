// pairwise_distance on the CPU: d_e = |r_src(e) - r_dst(e)|, OpenMP-parallel over edges.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <atomic>

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
  const int64_t N = pos_c.size(0), E = ei.size(1);
  at::Tensor out = at::empty({E}, pos_c.options());
  AT_DISPATCH_FLOATING_TYPES(pos_c.scalar_type(), "pairwise_distance_cpu", [&] {
    const scalar_t* p = pos_c.const_data_ptr<scalar_t>();
    const int64_t* src = ei.const_data_ptr<int64_t>();
    const int64_t* dst = src + E;
    scalar_t* d = out.mutable_data_ptr<scalar_t>();
    // Any edge order is fine here; each index is bounds-checked before the read (always on: the
    // two compares per edge are free next to the loads), and a bad edge makes the op raise.
    std::atomic<bool> bad{false};
    at::parallel_for(0, E, cpu::kEdgeGrain, [&](int64_t begin, int64_t end) {
      bool chunk_bad = false;
      for (int64_t e = begin; e < end; ++e) {
        const int64_t i = src[e], j = dst[e];
        if (i < 0 || i >= N || j < 0 || j >= N) {
          chunk_bad = true;
          d[e] = scalar_t(0);
          continue;
        }
        d[e] = edge_length(p, i, j);
      }
      if (chunk_bad) bad.store(true, std::memory_order_relaxed);
    });
    TORCH_CHECK_VALUE(!bad.load(), "pairwise_distance: malformed graph (N=", N, ", E=", E,
                "): edge_index has an atom index outside [0, N); confgf_fast.ops.check_graph(edge_index, N, "
                "sorted_by_source=False) names the first bad edge");
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(confgf_fast, CPU, m) { m.impl("pairwise_distance", &pairwise_distance_cpu); }

}  // namespace confgf_fast
