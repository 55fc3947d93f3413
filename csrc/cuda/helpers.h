// Launch helpers shared by every .cu file: one block size, a capped grid that is never empty, one
// launch (current stream, launch check), and the grid-stride loop. Kernels map threads to outputs
// with these and nothing else, so the only device code that is not shared, tested maths
// (csrc/common) is this indexing.
#pragma once

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>

#include <algorithm>
#include <cstdint>

namespace perceptual_ext {
namespace cuda {

constexpr int kThreads = 256;
// Grid cap for grid-stride kernels: far more blocks than any GPU runs at once, and within the
// y/z limits too, so one constant serves every dimension.
constexpr int64_t kMaxBlocks = 65535;

// Blocks for `total` elements at `threads` per block: at least 1 (a launch with 0 blocks is an
// error), at most kMaxBlocks (the grid-stride loop covers the rest).
inline unsigned grid_size(int64_t total, int threads = kThreads) {
  const int64_t blocks = (total + threads - 1) / threads;
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(blocks, kMaxBlocks)));
}

// Blocks for `count` independent work items (tiles, rows) with one block each.
inline unsigned blocks_for_items(int64_t count) {
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(count, kMaxBlocks)));
}

inline cudaStream_t current_stream() {
  return at::cuda::getCurrentCUDAStream();
}

// Launches `kernel` on `blocks` blocks of kThreads threads on the current stream (no dynamic shared
// memory) and checks the launch: the one way the .cu files start a kernel.
template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 blocks, Args... args) {
  kernel<<<blocks, kThreads, 0, current_stream()>>>(args...);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// Sum of `value` over the threads of a block of kThreads threads, in a fixed order (a tree in
// `scratch`, kThreads entries of shared memory): the same result on every run, no atomics. Every
// thread of the block must call it; every thread gets the sum, and `scratch` is free again after.
template <typename T>
__device__ T block_sum(T value, T* scratch) {
  static_assert((kThreads & (kThreads - 1)) == 0, "block_sum needs a power-of-two block");
  scratch[threadIdx.x] = value;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) scratch[threadIdx.x] += scratch[threadIdx.x + half];
    __syncthreads();
  }
  const T total = scratch[0];
  __syncthreads();
  return total;
}

}  // namespace cuda
}  // namespace perceptual_ext

// for (int64_t i = first thread's index; i < total; i += threads in the grid), with int64 indices.
#define PE_GRID_STRIDE_LOOP(i, total)                                                        \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (total); \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)
