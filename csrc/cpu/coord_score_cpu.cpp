// coord_score on the CPU: S_i = sum_{(i,j)} s_ij (r_i - r_j) / d_ij as a segment reduction over
// the CSR rows (OpenMP-parallel over atoms; each atom owns its row, so no atomics).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <optional>

#include "../checks.h"
#include "../kernel_math.h"
#include "csr_rows.h"

namespace confgf_fast {
namespace {

at::Tensor coord_score_cpu(const at::Tensor& pos,                       // [N, 3]
                           const at::Tensor& edge_index,                // [2, E] int64, sorted by source
                           const at::Tensor& edge_score,                // [E]
                           const std::optional<at::Tensor>& rowptr) {  // [N+1] int64
  check_coord_score_args(pos, edge_index, edge_score, rowptr);
  const at::Tensor pos_c = pos.contiguous();
  const at::Tensor ei = edge_index.contiguous();
  const at::Tensor score = edge_score.to(pos_c.scalar_type()).contiguous();
  const int64_t N = pos_c.size(0), E = ei.size(1);
  const at::Tensor rp = cpu::contiguous_rowptr(rowptr, N, E);
  at::Tensor out = at::empty_like(pos_c);
  AT_DISPATCH_FLOATING_TYPES(pos_c.scalar_type(), "coord_score_cpu", [&] {
    const scalar_t* p = pos_c.const_data_ptr<scalar_t>();
    const int64_t* src = ei.const_data_ptr<int64_t>();
    const int64_t* dst = src + E;
    const scalar_t* s = score.const_data_ptr<scalar_t>();
    const int64_t* r = rp.defined() ? rp.const_data_ptr<int64_t>() : nullptr;
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    cpu::GraphCheck check(N, E);
    at::parallel_for(0, N, cpu::kAtomGrain, [&](int64_t begin, int64_t end) {
      cpu::for_each_row(r, src, dst, nullptr, E, begin, end, check,
                        [&](int64_t i, int64_t e0, int64_t e1) { atom_score(p, dst, s, i, e0, e1, o + 3 * i); });
    });
    check.raise_if_bad("coord_score");
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(confgf_fast, CPU, m) { m.impl("coord_score", &coord_score_cpu); }

}  // namespace confgf_fast
