// Op schemas of the confgf_fast namespace, and nothing else.
//
// Kernels register themselves per dispatch key in their own files (cpu/*_cpu.cpp with
// TORCH_LIBRARY_IMPL(confgf_fast, CPU), cuda/*_cuda.cu with TORCH_LIBRARY_IMPL(confgf_fast, CUDA)),
// so a backend exists because its file was compiled. Fake (meta) kernels and autograd are
// registered from Python (confgf_fast/ops/_registration.py).
//
// Conventions (see confgf_fast/ops/reference.py for the math):
//   pos        [N, 3] float32/float64
//   edge_index [2, E] int64, sorted by source atom (row 0), both directions present
//   edge_score [E]    converted to pos' dtype
//   noise      [N, 3] converted to pos' dtype
//   target     [E]    converted to pos' dtype (project_sweeps: wanted edge lengths)
//   step       [N]    converted to pos' dtype (project_sweeps: per-atom step, 0.5 / degree)
//   rowptr     [N+1]  int64 CSR row pointers of the sorted sources, optional: the edges leaving
//                     atom i are rowptr[i]:rowptr[i+1]. Every kernel is a segment reduction over
//                     these rows (no atomics, deterministic). When None, the kernels find the rows
//                     from edge_index[0] themselves (CPU: one binary search per thread chunk; CUDA:
//                     one extra O(E) launch), so callers need not keep it; a sampler that has it
//                     (GraphBatch.rowptr) saves that work by passing it.
#include <torch/library.h>

TORCH_LIBRARY(confgf_fast, m) {
  // d_e = |r_src(e) - r_dst(e)|  -> [E]
  m.def("pairwise_distance(Tensor pos, Tensor edge_index) -> Tensor", {at::Tag::pt2_compliant_tag});
  // S_i = sum_{e in rowptr[i]:rowptr[i+1]} s_e (r_i - r_dst(e)) / d_e, 0 for d_e == 0  -> [N, 3]
  m.def("coord_score(Tensor pos, Tensor edge_index, Tensor edge_score, Tensor? rowptr) -> Tensor",
        {at::Tag::pt2_compliant_tag});
  // r_i + a * S_i * min(1, clip / |S_i|) + sqrt(2 a) * noise_i  -> new [N, 3] (inputs untouched)
  m.def(
      "langevin_step(Tensor pos, Tensor edge_index, Tensor edge_score, Tensor noise, Tensor? rowptr, "
      "float step_size, float clip) -> Tensor",
      {at::Tag::pt2_compliant_tag});
  // GINE neighbourhood sum with per-pair edge features (h [N, H], edge_attr [E/2, H], edge_pair [E]):
  // out_i = h_i + sum_{e in rowptr[i]:rowptr[i+1]} ReLU(h_dst(e) + edge_attr[edge_pair[e]])  -> [N, H]
  m.def("gine_aggregate(Tensor h, Tensor edge_index, Tensor edge_attr, Tensor edge_pair, Tensor? rowptr) -> Tensor",
        {at::Tag::pt2_compliant_tag});
  // its gradients w.r.t. h and edge_attr (each pair used by exactly its two directed edges)
  m.def(
      "gine_aggregate_backward(Tensor grad_out, Tensor h, Tensor edge_index, Tensor edge_attr, Tensor edge_pair, "
      "Tensor? rowptr) -> (Tensor, Tensor)",
      {at::Tag::pt2_compliant_tag});
  // `iters` damped Jacobi sweeps of stress majorisation towards the edge lengths `target`, with
  // per-atom steps: r_i <- r_i + step_i * sum_{e in rowptr[i]:rowptr[i+1]} (t_e - d_e) (r_i - r_dst(e)) / d_e,
  // 0 for d_e == 0, every atom reading the previous sweep's positions  -> new [N, 3] (inputs untouched)
  m.def("project_sweeps(Tensor pos, Tensor edge_index, Tensor target, Tensor step, Tensor? rowptr, int iters) -> Tensor",
        {at::Tag::pt2_compliant_tag});
}
