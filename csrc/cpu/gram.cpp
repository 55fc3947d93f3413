// Gram matrix, CPU: block-triangle GEMMs through BLAS, then a parallel mirror of the strict
// lower triangle.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "host/checks.h"
#include "common/gram.h"
#include "host/gram_gemm.h"
#include "host/registration.h"

namespace perceptual_ext {
namespace {

// 128-row blocks skip ~40% of the products at C=512 while each GEMM stays large enough for BLAS.
constexpr int64_t kBlock = 128;

void check_inputs(const at::Tensor& features) {
  check_rank(features, 3, "gram", "features", "[N, C, L]");
  check_dtype(features, {at::kFloat, at::kDouble}, "gram", "features");
}

at::Tensor gram_cpu(const at::Tensor& features, bool normalize) {
  check_inputs(features);
  const int64_t n = features.size(0), c = features.size(1), l = features.size(2);
  auto out = at::empty({n, c, c}, features.options());
  if (out.numel() == 0) return out;
  if (l == 0) return out.zero_();
  const gram::BlockPlan plan{c, gram::choose_block(c, kBlock)};
  gram::upper_block_triangle(out, features, plan, gram::scale(c, l, normalize));
  AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "gram_mirror_cpu", [&] {
    scalar_t* g = out.data_ptr<scalar_t>();
    at::parallel_for(0, n * c, 16, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const int64_t row = r % c;
        for (int64_t col = 0; col < row; ++col) {
          const int64_t i = r * c + col;
          g[i] = g[gram::transposed_index(i, row, col, c)];
        }
      }
    });
  });
  return out;
}

at::Tensor gram_backward_cpu(const at::Tensor& grad, const at::Tensor& features, bool normalize) {
  check_inputs(features);
  check_rank(grad, 3, "gram_backward", "grad", "[N, C, C]");
  check_same(grad, features, "gram_backward", "grad", "features");
  return gram::backward(grad, features, normalize);
}

}  // namespace

TORCH_LIBRARY_IMPL(perceptual_ext, CPU, m) {
  impl_with_backward(m, "gram", &gram_cpu, &gram_backward_cpu);
}

}  // namespace perceptual_ext
