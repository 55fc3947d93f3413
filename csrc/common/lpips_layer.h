// LPIPS head arithmetic shared by the CPU and CUDA kernels (Zhang et al. 2018, lpips v0.1).
//
// Per pixel p of [N, C, H, W] features a and b, with norms over channels:
//   n_a = sqrt(sum_c a_c^2),  i_a = 1 / (n_a + eps),  d_c = a_c i_a - b_c i_b
//   out = sum_c w_c d_c^2
// Backward for an upstream gradient g of out (nothing but a, b, w is kept; everything is
// recomputed): u_c = 2 g w_c d_c is the gradient of the unit vectors, and
//   da_k =  i_a (u_k - a_k r_a),  r_a = (sum_c u_c a_c) i_a / n_a   (0 where n_a == 0)
//   db_k = -i_b (u_k - b_k r_b),  r_b = (sum_c u_c b_c) i_b / n_b
// since d(a_c i_a)/da_k = i_a delta_ck - a_c a_k i_a^2 / n_a. Where n_a == 0 (a == 0) the radial
// term vanishes with a, so r_a = 0 gives the finite limit i_a u instead of torch's 0/0 in
// sqrt's backward. Where a == b, d = 0 and both gradients are exactly 0.
//
// The element functions are what both devices call; the CPU runs them over pixel blocks with the
// channel loop outside (vectorized over pixels), CUDA one pixel per thread (pixel_forward /
// pixel_backward). The accumulator type `acc_t` is float for float input, double for double.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/macros.h"

namespace perceptual_ext {
namespace lpips_layer {

// lpips's normalize_tensor: x / (sqrt(sum_c x^2) + eps).
constexpr double kEps = 1e-10;

template <typename acc_t>
PE_HOST_DEVICE PE_INLINE acc_t inv_norm(acc_t norm) {
  return acc_t(1) / (norm + acc_t(kEps));
}

// d_c = a_c i_a - b_c i_b, the difference of the unit vectors. Where the norms agree (always where
// a == b) it is computed as (a - b) i_a, exactly 0 at a == b even where the compiler contracts
// a * ia - b * ib into an FMA (which would leave the rounding error of b * ib, and a nonzero
// gradient at x == y). Not (a - b) i_a + b (i_a - i_b) everywhere: at a == 0, i_a = 1e10 and
// that form cancels two terms of size |b| 1e10.
template <typename acc_t>
PE_HOST_DEVICE PE_INLINE acc_t unit_diff(acc_t a, acc_t b, acc_t ia, acc_t ib) {
  return ia == ib ? (a - b) * ia : a * ia - b * ib;
}

// One channel's term of the output, w_c d_c^2: never negative for w_c >= 0.
template <typename acc_t>
PE_HOST_DEVICE PE_INLINE acc_t term(acc_t w, acc_t d) {
  return w * (d * d);
}

// u_c = 2 g w_c d_c, the gradient w.r.t. the unit vector of a (minus that of b).
template <typename acc_t>
PE_HOST_DEVICE PE_INLINE acc_t unit_grad(acc_t g, acc_t w, acc_t d) {
  return acc_t(2) * g * w * d;
}

// r = (sum_c u_c x_c) i / n, and 0 where n == 0 (x == 0: the radial part vanishes with x).
template <typename acc_t>
PE_HOST_DEVICE PE_INLINE acc_t radial(acc_t u_dot_x, acc_t norm, acc_t inv) {
  return norm > acc_t(0) ? u_dot_x * inv / norm : acc_t(0);
}

// dx_k = i (u_k - x_k r): the unit vector's Jacobian (delta / n - x x^T / n^3, with the eps) applied to u.
template <typename acc_t>
PE_HOST_DEVICE PE_INLINE acc_t input_grad(acc_t u, acc_t x, acc_t inv, acc_t r) {
  return inv * (u - x * r);
}

// The squared norms over the channels of one pixel of a and of b, channels `stride` elements apart
// (NCHW: stride = H * W), summed in channel order.
template <typename acc_t>
struct SquaredNorms {
  acc_t a, b;
};

template <typename scalar_t, typename acc_t>
PE_HOST_DEVICE PE_INLINE SquaredNorms<acc_t> squared_norms(const scalar_t* a, const scalar_t* b, int64_t channels,
                                                           int64_t stride) {
  SquaredNorms<acc_t> s{0, 0};
  for (int64_t c = 0; c < channels; ++c) {
    const acc_t x = static_cast<acc_t>(a[c * stride]), y = static_cast<acc_t>(b[c * stride]);
    s.a += x * x;
    s.b += y * y;
  }
  return s;
}

// One pixel, channels `stride` elements apart (NCHW: stride = H * W). Two passes: the norms, then
// the weighted squared differences.
template <typename scalar_t, typename acc_t>
PE_HOST_DEVICE PE_INLINE acc_t pixel_forward(const scalar_t* a, const scalar_t* b, const scalar_t* w, int64_t channels,
                                             int64_t stride) {
  using std::sqrt;
  const auto s = squared_norms<scalar_t, acc_t>(a, b, channels, stride);
  const acc_t ia = inv_norm<acc_t>(sqrt(s.a)), ib = inv_norm<acc_t>(sqrt(s.b));
  acc_t out = 0;
  for (int64_t c = 0; c < channels; ++c) {
    const acc_t d = unit_diff<acc_t>(static_cast<acc_t>(a[c * stride]), static_cast<acc_t>(b[c * stride]), ia, ib);
    out += term<acc_t>(static_cast<acc_t>(w[c]), d);
  }
  return out;
}

// Gradients of one pixel for upstream gradient g: three passes over the channels (norms;
// sum u a and sum u b; the gradients). da/db may be null when that gradient is not wanted.
template <typename scalar_t, typename acc_t>
PE_HOST_DEVICE PE_INLINE void pixel_backward(acc_t g, const scalar_t* a, const scalar_t* b, const scalar_t* w,
                                             int64_t channels, int64_t stride, scalar_t* da, scalar_t* db) {
  using std::sqrt;
  const auto s = squared_norms<scalar_t, acc_t>(a, b, channels, stride);
  const acc_t na = sqrt(s.a), nb = sqrt(s.b);
  const acc_t ia = inv_norm<acc_t>(na), ib = inv_norm<acc_t>(nb);
  acc_t ua = 0, ub = 0;
  for (int64_t c = 0; c < channels; ++c) {
    const acc_t x = static_cast<acc_t>(a[c * stride]), y = static_cast<acc_t>(b[c * stride]);
    const acc_t u = unit_grad<acc_t>(g, static_cast<acc_t>(w[c]), unit_diff<acc_t>(x, y, ia, ib));
    ua += u * x;
    ub += u * y;
  }
  const acc_t ra = radial<acc_t>(ua, na, ia), rb = radial<acc_t>(ub, nb, ib);
  for (int64_t c = 0; c < channels; ++c) {
    const acc_t x = static_cast<acc_t>(a[c * stride]), y = static_cast<acc_t>(b[c * stride]);
    const acc_t u = unit_grad<acc_t>(g, static_cast<acc_t>(w[c]), unit_diff<acc_t>(x, y, ia, ib));
    if (da) da[c * stride] = static_cast<scalar_t>(input_grad<acc_t>(u, x, ia, ra));
    if (db) db[c * stride] = static_cast<scalar_t>(-input_grad<acc_t>(u, y, ib, rb));
  }
}

}  // namespace lpips_layer
}  // namespace perceptual_ext
