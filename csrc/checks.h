// Argument checks shared by the CPU and CUDA kernels (cheap: shapes, dtypes and devices only,
// never a pass over the data, so nothing here synchronises a GPU).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <optional>

namespace confgf_fast {

inline void check_pos(const at::Tensor& pos, const char* name = "pos") {
  TORCH_CHECK(pos.dim() == 2 && pos.size(1) == 3, name, " must have shape [N, 3], got ", pos.sizes());
  TORCH_CHECK(pos.scalar_type() == at::kFloat || pos.scalar_type() == at::kDouble, name,
              " must be float32 or float64, got ", pos.scalar_type());
}

inline void check_edge_index(const at::Tensor& edge_index, const at::Tensor& pos) {
  TORCH_CHECK(edge_index.dim() == 2 && edge_index.size(0) == 2, "edge_index must have shape [2, E], got ",
              edge_index.sizes());
  TORCH_CHECK(edge_index.scalar_type() == at::kLong, "edge_index must be int64, got ", edge_index.scalar_type());
  TORCH_CHECK(edge_index.device() == pos.device(), "edge_index is on ", edge_index.device(), " but pos is on ",
              pos.device());
}

inline void check_edge_score(const at::Tensor& edge_score, const at::Tensor& edge_index, const at::Tensor& pos) {
  TORCH_CHECK(edge_score.dim() == 1 && edge_score.size(0) == edge_index.size(1), "edge_score must have shape [E=",
              edge_index.size(1), "], got ", edge_score.sizes());
  TORCH_CHECK(edge_score.is_floating_point(), "edge_score must be floating point, got ", edge_score.scalar_type());
  TORCH_CHECK(edge_score.device() == pos.device(), "edge_score is on ", edge_score.device(), " but pos is on ",
              pos.device());
}

inline void check_rowptr(const std::optional<at::Tensor>& maybe_rowptr, const at::Tensor& pos) {
  if (!maybe_rowptr.has_value()) return;
  const at::Tensor& rowptr = *maybe_rowptr;
  TORCH_CHECK(rowptr.dim() == 1 && rowptr.size(0) == pos.size(0) + 1, "rowptr must have shape [N+1=",
              pos.size(0) + 1, "], got ", rowptr.sizes());
  TORCH_CHECK(rowptr.scalar_type() == at::kLong, "rowptr must be int64, got ", rowptr.scalar_type());
  TORCH_CHECK(rowptr.device() == pos.device(), "rowptr is on ", rowptr.device(), " but pos is on ", pos.device());
}

inline void check_noise(const at::Tensor& noise, const at::Tensor& pos) {
  TORCH_CHECK(noise.sizes() == pos.sizes(), "noise must have the shape of pos ", pos.sizes(), ", got ",
              noise.sizes());
  TORCH_CHECK(noise.is_floating_point(), "noise must be floating point, got ", noise.scalar_type());
  TORCH_CHECK(noise.device() == pos.device(), "noise is on ", noise.device(), " but pos is on ", pos.device());
}

// coord_score / langevin_step arguments (one place, so the CPU and CUDA kernels refuse the same inputs).
inline void check_coord_score_args(const at::Tensor& pos, const at::Tensor& edge_index, const at::Tensor& edge_score,
                                   const std::optional<at::Tensor>& rowptr) {
  check_pos(pos);
  check_edge_index(edge_index, pos);
  check_edge_score(edge_score, edge_index, pos);
  check_rowptr(rowptr, pos);
}

inline void check_langevin_step_args(const at::Tensor& pos, const at::Tensor& edge_index,
                                     const at::Tensor& edge_score, const at::Tensor& noise,
                                     const std::optional<at::Tensor>& rowptr, double step_size, double clip) {
  check_coord_score_args(pos, edge_index, edge_score, rowptr);
  check_noise(noise, pos);
  TORCH_CHECK(step_size >= 0.0, "step_size must be >= 0, got ", step_size);
  TORCH_CHECK(clip >= 0.0, "clip must be >= 0, got ", clip);
}

// project_sweeps: target [E] wanted edge lengths, step [N] per-atom steps, iters >= 0.
inline void check_project_sweeps_args(const at::Tensor& pos, const at::Tensor& edge_index, const at::Tensor& target,
                                      const at::Tensor& step, const std::optional<at::Tensor>& rowptr,
                                      int64_t iters) {
  check_pos(pos);
  check_edge_index(edge_index, pos);
  TORCH_CHECK(target.dim() == 1 && target.size(0) == edge_index.size(1), "target must have shape [E=",
              edge_index.size(1), "], got ", target.sizes());
  TORCH_CHECK(target.is_floating_point(), "target must be floating point, got ", target.scalar_type());
  TORCH_CHECK(target.device() == pos.device(), "target is on ", target.device(), " but pos is on ", pos.device());
  TORCH_CHECK(step.dim() == 1 && step.size(0) == pos.size(0), "step must have shape [N=", pos.size(0), "], got ",
              step.sizes());
  TORCH_CHECK(step.is_floating_point(), "step must be floating point, got ", step.scalar_type());
  TORCH_CHECK(step.device() == pos.device(), "step is on ", step.device(), " but pos is on ", pos.device());
  check_rowptr(rowptr, pos);
  TORCH_CHECK(iters >= 0, "iters must be >= 0, got ", iters);
}

// gine_aggregate: node features h [N, H], edge features [P, H] of the P = E/2 undirected pairs
// (same dtype as h), edge_pair [E] mapping each directed edge to its pair.
inline void check_node_features(const at::Tensor& h, const at::Tensor& edge_index, const at::Tensor& edge_attr,
                                const at::Tensor& edge_pair) {
  TORCH_CHECK(h.dim() == 2, "h must have shape [N, H], got ", h.sizes());
  TORCH_CHECK(h.scalar_type() == at::kFloat || h.scalar_type() == at::kDouble, "h must be float32 or float64, got ",
              h.scalar_type());
  check_edge_index(edge_index, h);
  const int64_t E = edge_index.size(1);
  TORCH_CHECK(edge_attr.dim() == 2 && edge_attr.size(1) == h.size(1) && 2 * edge_attr.size(0) == E,
              "edge_attr must have shape [E/2=", E / 2, ", H=", h.size(1), "] (one row per undirected pair), got ",
              edge_attr.sizes());
  TORCH_CHECK(edge_attr.scalar_type() == h.scalar_type(), "edge_attr must have h's dtype ", h.scalar_type(),
              ", got ", edge_attr.scalar_type());
  TORCH_CHECK(edge_attr.device() == h.device(), "edge_attr is on ", edge_attr.device(), " but h is on ", h.device());
  TORCH_CHECK(edge_pair.dim() == 1 && edge_pair.size(0) == E, "edge_pair must have shape [E=", E, "], got ",
              edge_pair.sizes());
  TORCH_CHECK(edge_pair.scalar_type() == at::kLong, "edge_pair must be int64, got ", edge_pair.scalar_type());
  TORCH_CHECK(edge_pair.device() == h.device(), "edge_pair is on ", edge_pair.device(), " but h is on ", h.device());
}

}  // namespace confgf_fast
