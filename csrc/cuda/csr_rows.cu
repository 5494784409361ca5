// The CSR row pointers the CUDA kernels need when the caller passes none (declared in csr_rows.cuh).
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/macros/Macros.h>

#include "csr_rows.cuh"

namespace confgf_fast {
namespace cuda {
namespace {

// rowptr[a] = first edge e with src[e] >= a, for a in [0, N]; rowptr[N] = E.
// Thread e in [0, E] owns the atoms in (src[e-1], src[e]] (with src[-1] = -1, src[E] = N), so each
// entry is written exactly once: deterministic, no atomics.
__global__ void rowptr_kernel(const int64_t* __restrict__ src,  // [E], sorted
                              int64_t* __restrict__ rowptr,     // [N+1]
                              int64_t N, int64_t E) {
  const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e > E) return;
  // Unsorted or out-of-range sources would leave entries of rowptr unwritten (garbage rows, reads
  // out of bounds later): stop with a device-side assert instead, as ATen's indexing kernels do.
  // Free (this thread reads these values anyway) and no host sync, so graph capture stays legal.
  CUDA_KERNEL_ASSERT(e == E || (src[e] >= 0 && src[e] < N));
  CUDA_KERNEL_ASSERT(e == 0 || e == E || src[e - 1] <= src[e]);
  const int64_t lo = e == 0 ? 0 : min(src[e - 1] + 1, N + 1);
  const int64_t hi = e == E ? N : min(src[e], N);
  for (int64_t a = lo; a <= hi; ++a) rowptr[a] = e;
}

}  // namespace

at::Tensor rowptr_or_build(const std::optional<at::Tensor>& rowptr, const at::Tensor& src, int64_t N,
                           cudaStream_t stream) {
  if (rowptr.has_value()) return rowptr->contiguous();
  const int64_t E = src.size(0);
  at::Tensor rp = at::empty({N + 1}, src.options());
  rowptr_kernel<<<num_blocks(E + 1), kThreads, 0, stream>>>(src.const_data_ptr<int64_t>(),
                                                             rp.mutable_data_ptr<int64_t>(), N, E);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return rp;
}

}  // namespace cuda
}  // namespace confgf_fast
