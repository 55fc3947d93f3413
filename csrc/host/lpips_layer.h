// Host side of the LPIPS head op, shared by its CPU and CUDA kernels: argument checks, and each call's
// contiguous tensors and outputs.
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

// One call's tensors, checked and contiguous, with its outputs allocated (uninitialized).
struct LpipsLayerCall {
  at::Tensor a, b, weight;  // [N, C, H, W], [N, C, H, W], [C]
  at::Tensor out;           // forward: [N, 1, H, W]
  at::Tensor grad;          // backward: [N, 1, H, W]
  at::Tensor da, db;        // backward: [N, C, H, W] where wanted, else [0]

  // Whether the backward call has any gradient to compute.
  bool any_grad() const { return da.numel() > 0 || db.numel() > 0; }
};

inline LpipsLayerCall lpips_layer_forward_call(const at::Tensor& a, const at::Tensor& b, const at::Tensor& weight) {
  check_lpips_layer_inputs(a, b, weight, "lpips_layer");
  LpipsLayerCall c{a.contiguous(), b.contiguous(), weight.contiguous()};
  c.out = at::empty({a.size(0), 1, a.size(2), a.size(3)}, a.options());
  return c;
}

inline LpipsLayerCall lpips_layer_backward_call(const at::Tensor& grad, const at::Tensor& a, const at::Tensor& b,
                                                const at::Tensor& weight, bool need_a, bool need_b) {
  const char* op = "lpips_layer_backward";
  check_lpips_layer_inputs(a, b, weight, op);
  check_lpips_layer_grad(grad, a, op);
  LpipsLayerCall c{a.contiguous(), b.contiguous(), weight.contiguous()};
  c.grad = grad.contiguous();
  c.da = need_a ? at::empty(a.sizes(), a.options()) : at::empty({0}, a.options());
  c.db = need_b ? at::empty(b.sizes(), b.options()) : at::empty({0}, b.options());
  return c;
}

}  // namespace perceptual_ext
