// Host-side GEMM plan of the Gram op, shared by the CPU and CUDA kernels: both hand the block
// triangle and the backward product to BLAS (MKL/OpenBLAS or cuBLAS) through ATen, and differ
// only in how they mirror the triangle.
#pragma once

#include <ATen/ATen.h>

#include "common/gram.h"

namespace perceptual_ext {
namespace gram {

// out[:, i, j] = scale * sum_l x[:, i, l] x[:, j, l] for the blocks on and above the block
// diagonal. `out` is [N, C, C], `features` [N, C, L]; entries in mirrored blocks are left unset.
inline void upper_block_triangle(at::Tensor& out, const at::Tensor& features, const BlockPlan& plan, double scale) {
  // One GEMM per block row: the strip from the diagonal block to the last column. Same products
  // as block-by-block, in num_blocks calls instead of num_blocks^2 / 2.
  for (int64_t n = 0; n < features.size(0); ++n) {
    const auto x = features.select(0, n);
    auto g = out.select(0, n);
    for (int64_t b = 0; b < plan.num_blocks(); ++b) {
      const int64_t begin = plan.begin(b);
      const auto rows = x.narrow(0, begin, plan.size(b));
      const auto cols = x.narrow(0, begin, plan.channels - begin);
      auto strip = g.narrow(0, begin, plan.size(b)).narrow(1, begin, plan.channels - begin);
      // beta = 0: `strip` is uninitialized and must not be read.
      at::addmm_out(strip, strip, rows, cols.t(), /*beta=*/0, /*alpha=*/scale);
    }
  }
}

// d features = scale * (dG + dG^T) features: one batched GEMM.
inline at::Tensor backward(const at::Tensor& grad, const at::Tensor& features, bool normalize) {
  const int64_t n = features.size(0), c = features.size(1);
  TORCH_CHECK_VALUE(grad.dim() == 3 && grad.size(0) == n && grad.size(1) == c && grad.size(2) == c,
                    "gram_backward: grad must be [N, C, C] = [", n, ", ", c, ", ", c, "] for features of shape ",
                    features.sizes(), ", got ", grad.sizes());
  const double s = scale(features.size(1), features.size(2), normalize);
  const auto symmetric = grad + grad.transpose(1, 2);
  auto out = at::empty(features.sizes(), features.options());
  if (out.numel() == 0) return out;
  return at::baddbmm_out(out, out, symmetric, features, /*beta=*/0, /*alpha=*/s);
}

}  // namespace gram
}  // namespace perceptual_ext
