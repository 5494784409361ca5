// project_sweeps on the CPU: `iters` damped Jacobi sweeps of stress majorisation,
//   r_i <- r_i + step_i * sum_{(i,j)} (t_ij - d_ij) (r_i - r_j) / d_ij,
// all inside one call. Two [N, 3] buffers take turns as the previous and the next sweep (Jacobi:
// every atom reads only the previous sweep), so a sweep allocates nothing and makes no E-length
// temporaries (the unfused loop writes d, t - d and S every sweep). OpenMP-parallel over atoms
// within a sweep; each atom owns its CSR row and its output, so no atomics, and the result does
// not depend on the thread count.
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

// rowptr [N+1] of the sorted sources, built once per call when the caller has none: every sweep
// reads the same rows, so one O(N + E) scan here beats a search per chunk per sweep. The rows are
// non-decreasing and inside [0, E] whatever src holds; GraphCheck (csr_rows.h) then refuses any
// row that is not exactly its atom's edges before a sweep reads through it.
at::Tensor build_rowptr(const int64_t* src, int64_t N, int64_t E, const at::TensorOptions& options) {
  at::Tensor rp = at::empty({N + 1}, options);
  int64_t* r = rp.mutable_data_ptr<int64_t>();
  int64_t e = 0;
  for (int64_t a = 0; a <= N; ++a) {
    while (e < E && src[e] < a) ++e;
    r[a] = e;
  }
  return rp;
}

at::Tensor project_sweeps_cpu(const at::Tensor& pos,                     // [N, 3]
                              const at::Tensor& edge_index,              // [2, E] int64, sorted by source
                              const at::Tensor& target,                  // [E] wanted edge lengths
                              const at::Tensor& step,                    // [N] per-atom step
                              const std::optional<at::Tensor>& rowptr,  // [N+1] int64
                              int64_t iters) {
  check_project_sweeps_args(pos, edge_index, target, step, rowptr, iters);
  const at::Tensor pos_c = pos.contiguous();
  const at::Tensor ei = edge_index.contiguous();
  const at::Tensor tgt = target.to(pos_c.scalar_type()).contiguous();
  const at::Tensor stp = step.to(pos_c.scalar_type()).contiguous();
  const int64_t N = pos_c.size(0), E = ei.size(1);
  const int64_t* src = ei.const_data_ptr<int64_t>();
  at::Tensor rp = cpu::contiguous_rowptr(rowptr, N, E);
  if (!rp.defined()) rp = build_rowptr(src, N, E, ei.options());
  at::Tensor out = at::empty_like(pos_c);
  if (iters == 0) return out.copy_(pos_c);
  // The second buffer is needed only from two sweeps on.
  at::Tensor spare = iters > 1 ? at::empty_like(pos_c) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(pos_c.scalar_type(), "project_sweeps_cpu", [&] {
    const int64_t* dst = src + E;
    const int64_t* r = rp.const_data_ptr<int64_t>();
    const scalar_t* t = tgt.const_data_ptr<scalar_t>();
    const scalar_t* a = stp.const_data_ptr<scalar_t>();
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    scalar_t* o2 = spare.defined() ? spare.mutable_data_ptr<scalar_t>() : nullptr;
    // The rows are checked once, before the first sweep reads through them (always on; one pass
    // over the edges against the `iters` passes of the sweeps).
    cpu::GraphCheck check(N, E);
    at::parallel_for(0, N, cpu::kAtomGrain, [&](int64_t begin, int64_t end) {
      cpu::for_each_row(r, src, dst, nullptr, E, begin, end, check, [](int64_t, int64_t, int64_t) {});
    });
    check.raise_if_bad("project_sweeps");
    const scalar_t* prev = pos_c.const_data_ptr<scalar_t>();  // sweep 0 reads the caller's pos
    for (int64_t k = 0; k < iters; ++k) {
      // Alternate buffers so that the last sweep lands in `out`, with no final copy.
      scalar_t* next = (iters - 1 - k) % 2 == 0 ? o : o2;
      // One parallel_for per sweep: its end is the barrier Jacobi needs. Forking a warm OpenMP
      // pool costs microseconds; a QM9 batch's sweep is ~100 us per thousand atoms.
      at::parallel_for(0, N, cpu::kAtomGrain, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) stress_sweep_atom(prev, dst, t, a[i], i, r[i], r[i + 1], next);
      });
      prev = next;
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(confgf_fast, CPU, m) { m.impl("project_sweeps", &project_sweeps_cpu); }

}  // namespace confgf_fast
