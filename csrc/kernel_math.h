// The arithmetic of the kernels, written once for both backends: the per-atom score over a CSR
// row and the clipped Langevin update (coord_score, langevin_step), one atom's stress-majorisation
// sweep (project_sweeps), the edge length (pairwise_distance) and the GINE message and its
// gradient (gine_aggregate).
//
// Every function here is C10_HOST_DEVICE and inline: csrc/cpu/*.cpp call it from OpenMP loops,
// csrc/cuda/*.cu from one-thread-per-atom kernels (as ATen writes lerp once for CPU and CUDA), so
// the CPU tests against the float64 reference run the very arithmetic the CUDA kernels run. What
// differs per backend is only how a row [e0, e1) is found and how atoms are spread over threads
// (cpu/csr_rows.h, cuda/csr_rows.cuh).
//
// Contract (confgf_fast/ops/reference.py is the truth):
//   S_i = sum_{e in [e0, e1)} s_e (r_i - r_dst(e)) / d_e,  d_e = |r_i - r_dst(e)|,
//         an edge with d_e == 0 has no direction and adds 0 (not the NaN of 0/0);
//   r_i' = r_i + a * S_i * min(1, clip / |S_i|) + sqrt(2 a) * z_i.
#pragma once

#include <c10/macros/Macros.h>

#include <cmath>
#include <cstdint>

namespace confgf_fast {

// sqrt for float and double: libm on the host, the CUDA math API (correctly rounded without
// --use_fast_math) on the device.
C10_HOST_DEVICE inline float sqrt_(float x) { return ::sqrtf(x); }
C10_HOST_DEVICE inline double sqrt_(double x) { return ::sqrt(x); }

// A read-only load: through the read-only data cache on the device (__ldg), a plain load on the host.
template <typename T>
C10_HOST_DEVICE inline T load_ro(const T* p) {
#if defined(__CUDA_ARCH__)
  return __ldg(p);
#else
  return *p;
#endif
}

// S_i over the CSR row [e0, e1) of atom i. Edges are visited in storage order, so the result does
// not depend on how atoms are spread over threads (deterministic on both backends).
template <typename scalar_t>
C10_HOST_DEVICE inline void atom_score(const scalar_t* __restrict__ pos,    // [N, 3]
                                       const int64_t* __restrict__ dst,     // [E]
                                       const scalar_t* __restrict__ score,  // [E]
                                       int64_t i, int64_t e0, int64_t e1,
                                       scalar_t out[3]) {  // S_i
  const scalar_t xi = pos[3 * i], yi = pos[3 * i + 1], zi = pos[3 * i + 2];
  scalar_t sx = 0, sy = 0, sz = 0;
  for (int64_t e = e0; e < e1; ++e) {
    const int64_t j = load_ro(dst + e);
    const scalar_t dx = xi - load_ro(pos + 3 * j), dy = yi - load_ro(pos + 3 * j + 1),
                   dz = zi - load_ro(pos + 3 * j + 2);
    const scalar_t d = sqrt_(dx * dx + dy * dy + dz * dz);
    const scalar_t w = d > scalar_t(0) ? load_ro(score + e) / d : scalar_t(0);
    sx += w * dx;
    sy += w * dy;
    sz += w * dz;
  }
  out[0] = sx;
  out[1] = sy;
  out[2] = sz;
}

// The Langevin update of one atom from its score S: the per-atom norm clip (rescale to length
// `limit` only when longer; norm > limit >= 0 implies norm > 0, so no division by zero) and
// r + a * clip(S) + noise_scale * z. noise_scale = sqrt(2 a) is computed once by the caller, in
// double, so both backends round it the same way.
template <typename scalar_t>
C10_HOST_DEVICE inline void langevin_update(const scalar_t* __restrict__ r,  // [3] r_i
                                            const scalar_t S[3],             // S_i
                                            const scalar_t* __restrict__ z,  // [3] noise_i
                                            scalar_t a, scalar_t noise_scale, scalar_t limit,
                                            scalar_t* __restrict__ out) {  // [3] r_i'
  const scalar_t norm = sqrt_(S[0] * S[0] + S[1] * S[1] + S[2] * S[2]);
  const scalar_t as = a * (norm > limit ? limit / norm : scalar_t(1));
  for (int k = 0; k < 3; ++k) out[k] = r[k] + as * S[k] + noise_scale * z[k];
}

// One damped Jacobi sweep of stress majorisation for atom i (project_sweeps), over its CSR row
// [e0, e1):
//   r_i' = r_i + step_i * sum_e (t_e - d_e) (r_i - r_dst(e)) / d_e,   d_e = |r_i - r_dst(e)|,
// an edge with d_e == 0 adding 0 (as in atom_score). The weight is formed as (t - d) / d, the
// order in which the unfused loop (pairwise_distance, then coord_score with s = t - d) rounds it.
// Reads only `pos` (the previous sweep) and writes only out[3i..3i+2]: the two are different
// buffers, so all atoms of a sweep may run at once in any order (Jacobi) and the result does not
// depend on how atoms are spread over threads.
template <typename scalar_t>
C10_HOST_DEVICE inline void stress_sweep_atom(const scalar_t* __restrict__ pos,     // [N, 3] previous sweep
                                              const int64_t* __restrict__ dst,      // [E]
                                              const scalar_t* __restrict__ target,  // [E] t_e
                                              scalar_t step, int64_t i, int64_t e0, int64_t e1,
                                              scalar_t* __restrict__ out) {  // [N, 3] this sweep
  const scalar_t xi = pos[3 * i], yi = pos[3 * i + 1], zi = pos[3 * i + 2];
  scalar_t ax = 0, ay = 0, az = 0;
  for (int64_t e = e0; e < e1; ++e) {
    const int64_t j = load_ro(dst + e);
    const scalar_t dx = xi - load_ro(pos + 3 * j), dy = yi - load_ro(pos + 3 * j + 1),
                   dz = zi - load_ro(pos + 3 * j + 2);
    const scalar_t d = sqrt_(dx * dx + dy * dy + dz * dz);
    const scalar_t w = d > scalar_t(0) ? (load_ro(target + e) - d) / d : scalar_t(0);
    ax += w * dx;
    ay += w * dy;
    az += w * dz;
  }
  out[3 * i] = xi + step * ax;
  out[3 * i + 1] = yi + step * ay;
  out[3 * i + 2] = zi + step * az;
}

// d_e = |r_i - r_j| of one edge (pairwise_distance).
template <typename scalar_t>
C10_HOST_DEVICE inline scalar_t edge_length(const scalar_t* __restrict__ pos, int64_t i, int64_t j) {
  const scalar_t dx = load_ro(pos + 3 * i) - load_ro(pos + 3 * j);
  const scalar_t dy = load_ro(pos + 3 * i + 1) - load_ro(pos + 3 * j + 1);
  const scalar_t dz = load_ro(pos + 3 * i + 2) - load_ro(pos + 3 * j + 2);
  return sqrt_(dx * dx + dy * dy + dz * dz);
}

// GINE message of one feature of one edge, ReLU(h_j + a_p), and the gradient that flows back
// through it to h_j or a_p: g where h_j + a_p > 0, else 0. Selects, not branches: the masks are
// ~50 % random, and a branch per feature cost the CPU backward 45x the forward (measured).
template <typename scalar_t>
C10_HOST_DEVICE inline scalar_t gine_message(scalar_t h_j, scalar_t a_p) {
  const scalar_t m = h_j + a_p;
  return m > scalar_t(0) ? m : scalar_t(0);
}

template <typename scalar_t>
C10_HOST_DEVICE inline scalar_t gine_message_grad(scalar_t h_j, scalar_t a_p, scalar_t g) {
  return h_j + a_p > scalar_t(0) ? g : scalar_t(0);
}

}  // namespace confgf_fast
