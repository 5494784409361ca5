// How the CPU kernels find each atom's CSR row of edges and spread atoms over threads. The
// arithmetic done on a row is in ../kernel_math.h, shared with the CUDA kernels.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <cstdint>
#include <optional>

namespace confgf_fast {
namespace cpu {

// Atoms per parallel chunk: a row is ~10 edges (~100 flops), so chunks below a few thousand
// atoms cost more in OpenMP fork/join than they save.
constexpr int64_t kAtomGrain = 2048;
constexpr int64_t kEdgeGrain = 16384;

// Always-on checks of the graph, fused into the row walk, so no kernel reads memory outside its
// inputs whatever edge_index and rowptr hold (issue 26). They cost almost nothing: src[e] and
// dst[e] are loaded for the row anyway, and the failure flags are touched once per chunk.
// What is checked, per row [e0, e1) of atom i: 0 <= e0 <= e1 <= E (a caller's rowptr), and for
// each edge src[e] == i and 0 <= dst[e] < N (and 0 <= pair[e] < P for gine_aggregate). After the
// loop, the rows must cover all E edges. Together these imply that every edge was summed into its
// own source's row exactly once: a rowptr or an edge order that breaks the contract is an error,
// never a silently wrong result. A bad row is skipped (not read), and the op then raises.
class GraphCheck {
 public:
  enum : int { kSource = 1, kDest = 2, kRowptr = 4, kPair = 8, kUncovered = 16 };

  GraphCheck(int64_t N, int64_t E, int64_t P = -1) : N_(N), E_(E), P_(P) {}

  // True when the row may be read; otherwise records why and returns false.
  bool row_ok(const int64_t* src, const int64_t* dst, const int64_t* pair, int64_t i, int64_t e0,
              int64_t e1) {
    if (e0 < 0 || e0 > e1 || e1 > E_) return fail(kRowptr);
    int bad = 0;
    for (int64_t e = e0; e < e1; ++e) {
      bad |= src[e] != i ? kSource : 0;
      bad |= (dst[e] < 0 || dst[e] >= N_) ? kDest : 0;
      if (pair != nullptr) bad |= (pair[e] < 0 || pair[e] >= P_) ? kPair : 0;
    }
    return bad == 0 || fail(bad);
  }

  void add_covered(int64_t edges) { covered_.fetch_add(edges, std::memory_order_relaxed); }

  // Raises c10::Error (a RuntimeError in Python) naming what was wrong.
  void raise_if_bad(const char* op) const {
    int bad = flags_.load();
    if (bad == 0 && covered_.load() != E_) bad = kUncovered;
    if (bad == 0) return;
    std::string why;
    if (bad & kRowptr) why += " rowptr is not non-decreasing inside [0, E];";
    if (bad & kSource) why += " edge_index[0] is not sorted by source atom (or a source is outside [0, N));";
    if (bad & kDest) why += " edge_index[1] has an atom index outside [0, N);";
    if (bad & kPair) why += " edge_pair has an index outside [0, E/2);";
    if (bad & kUncovered) why += " some edges lie in no row (a source outside [0, N), or unsorted sources);";
    TORCH_CHECK_VALUE(false, op, ": malformed graph (N=", N_, ", E=", E_, "):", why,
                " confgf_fast.ops.check_graph(edge_index, N, rowptr) names the first bad edge");
  }

 private:
  bool fail(int bits) {
    flags_.fetch_or(bits, std::memory_order_relaxed);
    return false;
  }
  int64_t N_, E_, P_;
  std::atomic<int> flags_{0};
  std::atomic<int64_t> covered_{0};
};

// Calls f(i, e0, e1) for each atom i in [begin, end) whose CSR row [e0, e1) passes `check`.
// With rowptr the rows are read from it. Without, one binary search finds the chunk's first edge
// and the rows follow by a forward scan of the sorted sources: O(log E + edges of the chunk), so a
// caller that does not keep row pointers pays nothing noticeable for it.
template <typename F>
inline void for_each_row(const int64_t* rowptr,  // [N+1] or nullptr
                         const int64_t* src,     // [E], sorted
                         const int64_t* dst,     // [E]
                         const int64_t* pair,    // [E] or nullptr
                         int64_t E, int64_t begin, int64_t end, GraphCheck& check, const F& f) {
  int64_t covered = 0;
  int64_t e = rowptr != nullptr ? 0 : std::lower_bound(src, src + E, begin) - src;
  for (int64_t i = begin; i < end; ++i) {
    int64_t e0 = e, e1 = e;
    if (rowptr != nullptr) {
      e0 = rowptr[i];
      e1 = rowptr[i + 1];
    } else {
      while (e1 < E && src[e1] <= i) ++e1;
      e = e1;
    }
    if (check.row_ok(src, dst, pair, i, e0, e1)) {
      covered += e1 - e0;
      f(i, e0, e1);
    }
  }
  check.add_covered(covered);
}

// rowptr as a contiguous tensor (or undefined), after checking that it closes at E: one read, no
// pass over the data, catches a rowptr built for another edge set.
inline at::Tensor contiguous_rowptr(const std::optional<at::Tensor>& rowptr, int64_t N, int64_t E) {
  if (!rowptr.has_value()) return at::Tensor();
  at::Tensor rp = rowptr->contiguous();
  const int64_t first = rp.const_data_ptr<int64_t>()[0], last = rp.const_data_ptr<int64_t>()[N];
  TORCH_CHECK_VALUE(first == 0, "rowptr[0] must be 0, got ", first);
  TORCH_CHECK_VALUE(last == E, "rowptr[N] must equal the number of edges E=", E, ", got ", last);
  return rp;
}

}  // namespace cpu
}  // namespace confgf_fast
