// Argument checks of the LPIPS head op, shared by its CPU and CUDA kernels (host-only).
#pragma once

#include <ATen/ATen.h>

#include "host/checks.h"

namespace perceptual_ext {

// a, b [N, C, H, W] of one shape, dtype and device; weight [C] of the same dtype and device.
inline void check_lpips_layer_inputs(const at::Tensor& a, const at::Tensor& b, const at::Tensor& weight,
                                     const char* op) {
  check_rank(a, 4, op, "a", "[N, C, H, W]");
  check_rank(b, 4, op, "b", "[N, C, H, W]");
  check_rank(weight, 1, op, "weight", "[C]");
  check_dtype(a, {at::kFloat, at::kDouble}, op, "a");
  check_same(a, b, op, "a", "b");
  check_same(a, weight, op, "a", "weight");
  TORCH_CHECK(a.sizes() == b.sizes(), op, ": a and b must have the same shape, got ", a.sizes(), " and ", b.sizes());
  TORCH_CHECK(weight.size(0) == a.size(1), op, ": weight must be [C] with C = ", a.size(1),
              " (the channels of a), got shape ", weight.sizes());
}

// grad [N, 1, H, W] for features a [N, C, H, W].
inline void check_lpips_layer_grad(const at::Tensor& grad, const at::Tensor& a, const char* op) {
  check_same(grad, a, op, "grad", "a");
  TORCH_CHECK(grad.dim() == 4 && grad.size(0) == a.size(0) && grad.size(1) == 1 && grad.size(2) == a.size(2) &&
                  grad.size(3) == a.size(3),
              op, ": grad must be [N, 1, H, W] = [", a.size(0), ", 1, ", a.size(2), ", ", a.size(3), "], got shape ",
              grad.sizes());
}

}  // namespace perceptual_ext
