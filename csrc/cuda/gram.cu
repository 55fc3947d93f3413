// Gram matrix, CUDA: block-triangle GEMMs through cuBLAS (fp32 accumulation for half/bfloat16),
// then a mirror kernel copies the upper triangle into the lower one.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "host/checks.h"
#include "common/gram.h"
#include "host/gram_gemm.h"

namespace perceptual_ext {
namespace {

constexpr int64_t kBlock = 256;
constexpr int kThreads = 256;

template <typename scalar_t>
__global__ void mirror_kernel(scalar_t* __restrict__ g, int64_t batch, int64_t channels) {
  const int64_t total = batch * channels * channels;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t col = i % channels;
    const int64_t row = (i / channels) % channels;
    if (gram::BlockPlan::mirrored(row, col)) g[i] = g[gram::transposed_index(i, row, col, channels)];
  }
}

void check_inputs(const at::Tensor& features) {
  check_rank(features, 3, "gram", "features", "[N, C, L]");
  check_dtype(features, {at::kFloat, at::kDouble, at::kHalf, at::kBFloat16}, "gram", "features");
}

at::Tensor gram_cuda(const at::Tensor& features, bool normalize) {
  check_inputs(features);
  const c10::cuda::CUDAGuard guard(features.device());
  const int64_t n = features.size(0), c = features.size(1), l = features.size(2);
  auto out = at::empty({n, c, c}, features.options());
  if (out.numel() == 0) return out;
  if (l == 0) return out.zero_();
  const gram::BlockPlan plan{c, gram::choose_block(c, kBlock)};
  gram::upper_block_triangle(out, features, plan, gram::scale(c, l, normalize));
  const int64_t total = out.numel();
  const int blocks = static_cast<int>(std::min<int64_t>((total + kThreads - 1) / kThreads, 65535));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "gram_mirror_cuda", [&] {
    mirror_kernel<scalar_t><<<blocks, kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        out.data_ptr<scalar_t>(), n, c);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

at::Tensor gram_backward_cuda(const at::Tensor& grad, const at::Tensor& features, bool normalize) {
  check_inputs(features);
  check_rank(grad, 3, "gram_backward", "grad", "[N, C, C]");
  check_same(grad, features, "gram_backward", "grad", "features");
  const c10::cuda::CUDAGuard guard(features.device());
  return gram::backward(grad, features, normalize);
}

}  // namespace

TORCH_LIBRARY_IMPL(perceptual_ext, CUDA, m) {
  m.impl("gram", &gram_cuda);
  m.impl("gram_backward", &gram_backward_cuda);
}

}  // namespace perceptual_ext
