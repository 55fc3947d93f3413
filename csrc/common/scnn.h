// S-CNN arithmetic shared by the CPU and CUDA kernels (seed 004 §1.2): the P x P first conv as
// patch columns (zero padding P//2, optional patch normalization), ReLU with its on/off mask
// packed 32 channels to a word, and average-pooling window membership (window W, stride S,
// no padding).
//
// Pixels are processed in tiles: a tile is a range [p0, p1) of flat indices p = y * Wc + x over
// the covered region Hc x Wc (the rows and columns that some pooling window contains).
#pragma once

#include <cmath>
#include <cstdint>

#include "common/macros.h"
#include "common/pooling.h"

namespace perceptual_ext {
namespace scnn {

// ---- pooling windows ---------------------------------------------------------------------

// Number of windows along an axis of `size` pixels: the one rule of common/pooling.h.
using ::perceptual_ext::pooled_size;

// Pixels along an axis that at least one window contains: [0, covered_size).
PE_HOST_DEVICE PE_INLINE int64_t covered_size(int64_t pooled, int64_t window, int64_t stride) {
  return pooled > 0 ? (pooled - 1) * stride + window : 0;
}

// Windows i with i*S <= pos < i*S + W are first_window(pos) .. last_window(pos) (inclusive).
PE_HOST_DEVICE PE_INLINE int64_t first_window(int64_t pos, int64_t window, int64_t stride) {
  return pos < window ? 0 : (pos - window) / stride + 1;
}
PE_HOST_DEVICE PE_INLINE int64_t last_window(int64_t pos, int64_t stride, int64_t pooled) {
  const int64_t last = pos / stride;
  return last < pooled - 1 ? last : pooled - 1;
}

// Columns [begin, end) of row y that lie inside both the window columns [x0, x0 + W) and the
// tile [p0, p1) of flat indices y * width + x. Empty when begin >= end.
struct Span {
  int64_t begin;
  int64_t end;
};
PE_HOST_DEVICE PE_INLINE Span tile_span_in_row(int64_t y, int64_t width, int64_t x0, int64_t window, int64_t p0,
                                               int64_t p1) {
  const int64_t row = y * width;
  const int64_t lo = p0 - row, hi = p1 - row;
  return Span{x0 > lo ? x0 : lo, x0 + window < hi ? x0 + window : hi};
}

// ---- the first conv as patch columns -----------------------------------------------------

// Column entry k = (c * P + ky) * P + kx of output pixel (y, x) is x[c, y + ky - P/2, x + kx - P/2],
// zero outside the image (zero padding P//2, as nn.Conv2d(padding=P // 2) in seed 004's code).
template <typename T>
PE_HOST_DEVICE PE_INLINE void gather_patch(const T* image, int64_t channels, int64_t height, int64_t width, int64_t y,
                                           int64_t x, int64_t patch, T* column) {
  const int64_t r = patch / 2;
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t ky = 0; ky < patch; ++ky) {
      const int64_t yy = y + ky - r;
      for (int64_t kx = 0; kx < patch; ++kx) {
        const int64_t xx = x + kx - r;
        const bool inside = yy >= 0 && yy < height && xx >= 0 && xx < width;
        column[(c * patch + ky) * patch + kx] = inside ? image[(c * height + yy) * width + xx] : T(0);
      }
    }
}

// Patch normalization: the column is divided by its L2 norm over all P*P*C entries (seed 004's
// reimplementation divides the first conv by it). Norms below kPatchNormEps are clamped so that
// flat black patches map to 0 with a bounded gradient (the reimplementation clamps at 1e-10).
constexpr double kPatchNormEps = 1e-4;

PE_HOST_DEVICE PE_INLINE double patch_norm_scale(double sum_squares) {
  const double norm = ::sqrt(sum_squares);
  return 1.0 / (norm > kPatchNormEps ? norm : kPatchNormEps);
}

template <typename T>
PE_HOST_DEVICE PE_INLINE double sum_squares(const T* column, int64_t length) {
  double s = 0;
  for (int64_t k = 0; k < length; ++k) s += static_cast<double>(column[k]) * static_cast<double>(column[k]);
  return s;
}

template <typename T>
PE_HOST_DEVICE PE_INLINE void patch_normalize(T* column, int64_t length) {
  const double s = patch_norm_scale(sum_squares(column, length));
  for (int64_t k = 0; k < length; ++k) column[k] = static_cast<T>(static_cast<double>(column[k]) * s);
}

// Adjoint of patch_normalize at the raw column p: with s = 1/||p||, d p = s dy - s^3 p (p . dy);
// where the norm is clamped, s is a constant and d p = s dy. `grad` is overwritten in place.
template <typename T>
PE_HOST_DEVICE PE_INLINE void patch_normalize_backward(const T* raw, T* grad, int64_t length) {
  const double ss = sum_squares(raw, length);
  const double s = patch_norm_scale(ss);
  double dot = 0;
  if (::sqrt(ss) > kPatchNormEps)
    for (int64_t k = 0; k < length; ++k) dot += static_cast<double>(raw[k]) * static_cast<double>(grad[k]);
  const double s3dot = s * s * s * dot;
  for (int64_t k = 0; k < length; ++k)
    grad[k] = static_cast<T>(s * static_cast<double>(grad[k]) - s3dot * static_cast<double>(raw[k]));
}

// Gradient of input pixel (c, yy, xx) from the column gradients of the tile [p0, p1): the sum of
// every column entry that read it (the gather form of col2im, so no two threads write one pixel).
// `dcols` is [p1 - p0, C_in * P * P]; output pixels live in the covered region.
template <typename T>
PE_HOST_DEVICE PE_INLINE double patch_grad_at(const T* dcols, int64_t c, int64_t yy, int64_t xx, int64_t patch,
                                              int64_t covered_h, int64_t covered_w, int64_t p0, int64_t p1,
                                              int64_t in_channels) {
  const int64_t r = patch / 2, length = in_channels * patch * patch;
  double acc = 0;
  for (int64_t ky = 0; ky < patch; ++ky) {
    const int64_t y = yy - ky + r;
    if (y < 0 || y >= covered_h) continue;
    for (int64_t kx = 0; kx < patch; ++kx) {
      const int64_t x = xx - kx + r;
      if (x < 0 || x >= covered_w) continue;
      const int64_t p = y * covered_w + x;
      if (p < p0 || p >= p1) continue;
      acc += static_cast<double>(dcols[(p - p0) * length + (c * patch + ky) * patch + kx]);
    }
  }
  return acc;
}

// ---- ReLU masks, one bit per activation ---------------------------------------------------

constexpr int64_t kMaskBits = 32;

PE_HOST_DEVICE PE_INLINE int64_t mask_words(int64_t channels) {
  return (channels + kMaskBits - 1) / kMaskBits;
}

// ReLU in place on count <= 32 values; bit k of the result is 1 where value k was > 0 (the
// derivative torch's relu uses: 0 at exactly 0).
template <typename T>
PE_HOST_DEVICE PE_INLINE uint32_t relu_and_pack(T* values, int64_t count) {
  uint32_t bits = 0;
  for (int64_t k = 0; k < count; ++k) {
    const bool on = values[k] > T(0);
    bits |= static_cast<uint32_t>(on) << k;
    values[k] = on ? values[k] : T(0);
  }
  return bits;
}

// Zero the gradients whose activation was off (count <= 32 values).
template <typename T>
PE_HOST_DEVICE PE_INLINE void apply_mask(T* grad, int64_t count, uint32_t bits) {
  for (int64_t k = 0; k < count; ++k) grad[k] = ((bits >> k) & 1u) ? grad[k] : T(0);
}

// Sizes of one call: input, network, pooling, and the covered region. Plain data with host-device
// accessors, passed by value to the CUDA kernels.
struct Geometry {
  int64_t batch, in_channels, height, width;  // input
  int64_t channels, depth, patch;             // network
  int64_t window, stride;                     // pooling
  int64_t pooled_h, pooled_w, covered_h, covered_w;

  PE_HOST_DEVICE int64_t column_length() const { return in_channels * patch * patch; }
  PE_HOST_DEVICE int64_t covered_pixels() const { return covered_h * covered_w; }
  PE_HOST_DEVICE int64_t words() const { return mask_words(channels); }
};

}  // namespace scnn
}  // namespace perceptual_ext
