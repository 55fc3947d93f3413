// Argument checks shared by the kernels of every op (host-only).
#pragma once

#include <ATen/ATen.h>

#include <initializer_list>

namespace perceptual_ext {

inline void check_rank(const at::Tensor& t, int64_t rank, const char* op, const char* name, const char* layout) {
  TORCH_CHECK(t.dim() == rank, op, ": ", name, " must be ", layout, ", got shape ", t.sizes());
}

inline void check_dtype(const at::Tensor& t, std::initializer_list<at::ScalarType> allowed, const char* op,
                        const char* name) {
  for (auto s : allowed)
    if (t.scalar_type() == s) return;
  TORCH_CHECK_TYPE(false, op, ": ", name, " has unsupported dtype ", t.scalar_type(), " on ", t.device());
}

inline void check_same(const at::Tensor& a, const at::Tensor& b, const char* op, const char* name_a,
                       const char* name_b) {
  TORCH_CHECK(a.device() == b.device(), op, ": ", name_a, " and ", name_b, " must be on the same device, got ",
              a.device(), " and ", b.device());
  TORCH_CHECK_TYPE(a.scalar_type() == b.scalar_type(), op, ": ", name_a, " and ", name_b,
                   " must have the same dtype, got ", a.scalar_type(), " and ", b.scalar_type());
}

// An operand tied to `like`: on its device, of its dtype (check_same), and of exactly `sizes`
// ("op: name must be [2, 3], got [2, 4]").
inline void check_like(const at::Tensor& t, const char* name, at::IntArrayRef sizes, const at::Tensor& like,
                       const char* like_name, const char* op) {
  check_same(like, t, op, like_name, name);
  TORCH_CHECK(t.sizes() == sizes, op, ": ", name, " must be ", sizes, ", got ", t.sizes());
}

}  // namespace perceptual_ext
