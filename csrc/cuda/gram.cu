// Gram matrix, CUDA: block-triangle GEMMs through cuBLAS, then a mirror kernel copies the upper
// triangle into the lower one. Half/bfloat16 GEMMs accumulate in fp32: cuBLAS's reduced-precision
// reductions and fp16 accumulation, which torch may allow, are switched off around them.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "host/checks.h"
#include "common/gram.h"
#include "cuda/fp32_reductions.h"
#include "cuda/helpers.h"
#include "host/gram_gemm.h"
#include "host/registration.h"

namespace perceptual_ext {
namespace {

constexpr int64_t kBlock = 256;

template <typename scalar_t>
__global__ void mirror_kernel(scalar_t* __restrict__ g, int64_t batch, int64_t channels) {
  const int64_t total = batch * channels * channels;
  PE_GRID_STRIDE_LOOP(i, total) {
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
  {
    const cuda::Fp32Reductions fp32(features);
    gram::upper_block_triangle(out, features, plan, gram::scale(c, l, normalize));
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "gram_mirror_cuda", [&] {
    cuda::launch(mirror_kernel<scalar_t>, cuda::grid_size(out.numel()), out.data_ptr<scalar_t>(), n, c);
  });
  return out;
}

at::Tensor gram_backward_cuda(const at::Tensor& grad, const at::Tensor& features, bool normalize) {
  check_inputs(features);
  check_rank(grad, 3, "gram_backward", "grad", "[N, C, C]");
  check_same(grad, features, "gram_backward", "grad", "features");
  const c10::cuda::CUDAGuard guard(features.device());
  const cuda::Fp32Reductions fp32(features);
  return gram::backward(grad, features, normalize);
}

}  // namespace

TORCH_LIBRARY_IMPL(perceptual_ext, CUDA, m) {
  impl_with_backward(m, "gram", &gram_cuda, &gram_backward_cuda);
}

}  // namespace perceptual_ext
