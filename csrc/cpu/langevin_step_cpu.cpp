// langevin_step on the CPU, fused: for each atom, its score from its CSR row of edges
// (distances and chain rule), the per-atom norm clip and the Langevin update, in one pass over
// the edges and one write of the new positions. OpenMP-parallel over atoms, no atomics.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <cmath>
#include <optional>

#include "../checks.h"
#include "../kernel_math.h"
#include "csr_rows.h"

namespace confgf_fast {
namespace {

at::Tensor langevin_step_cpu(const at::Tensor& pos,                     // [N, 3]
                             const at::Tensor& edge_index,              // [2, E] int64, sorted by source
                             const at::Tensor& edge_score,              // [E]
                             const at::Tensor& noise,                   // [N, 3]
                             const std::optional<at::Tensor>& rowptr,  // [N+1] int64
                             double step_size, double clip) {
  check_langevin_step_args(pos, edge_index, edge_score, noise, rowptr, step_size, clip);
  const at::Tensor pos_c = pos.contiguous();
  const at::Tensor ei = edge_index.contiguous();
  const at::Tensor score = edge_score.to(pos_c.scalar_type()).contiguous();
  const at::Tensor noise_c = noise.to(pos_c.scalar_type()).contiguous();
  const int64_t N = pos_c.size(0), E = ei.size(1);
  const at::Tensor rp = cpu::contiguous_rowptr(rowptr, N, E);
  at::Tensor out = at::empty_like(pos_c);
  AT_DISPATCH_FLOATING_TYPES(pos_c.scalar_type(), "langevin_step_cpu", [&] {
    const scalar_t* p = pos_c.const_data_ptr<scalar_t>();
    const int64_t* src = ei.const_data_ptr<int64_t>();
    const int64_t* dst = src + E;
    const scalar_t* s = score.const_data_ptr<scalar_t>();
    const scalar_t* z = noise_c.const_data_ptr<scalar_t>();
    const int64_t* r = rp.defined() ? rp.const_data_ptr<int64_t>() : nullptr;
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    const scalar_t a = static_cast<scalar_t>(step_size);
    const scalar_t noise_scale = static_cast<scalar_t>(std::sqrt(2.0 * step_size));
    const scalar_t limit = static_cast<scalar_t>(clip);
    cpu::GraphCheck check(N, E);
    at::parallel_for(0, N, cpu::kAtomGrain, [&](int64_t begin, int64_t end) {
      cpu::for_each_row(r, src, dst, nullptr, E, begin, end, check, [&](int64_t i, int64_t e0, int64_t e1) {
        scalar_t S[3];
        atom_score(p, dst, s, i, e0, e1, S);
        langevin_update(p + 3 * i, S, z + 3 * i, a, noise_scale, limit, o + 3 * i);
      });
    });
    check.raise_if_bad("langevin_step");
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(confgf_fast, CPU, m) { m.impl("langevin_step", &langevin_step_cpu); }

}  // namespace confgf_fast
