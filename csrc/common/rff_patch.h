// Patch random-Fourier-feature arithmetic shared by the CPU and CUDA kernels.
//
// Input x [N, C, H, W] is reflect-padded by pad = P/2 and convolved with weight [F, C, P, P]:
// the feature map has Ho x Wo pixels (Ho = H + 2 pad - P + 1, i.e. H for odd P). Pixel (i, j)
// sees the patch x[c, reflect(i + dy - pad), reflect(j + dx - pad)], flattened as
// k = (c P + dy) P + dx (the layout of weight[f]). z_f = cos(w_f . p + b_f) is averaged over
// W x W windows with stride S: window a covers map rows [a S, a S + W), and there are
// (Ho - W) / S + 1 of them, like avg_pool2d without padding.
//
// Fused kernels never hold a per-pixel feature map. Each axis is cut into *segments* at every
// window start and end; all pixels of a segment (rows) x segment (cols) tile belong to the same
// set of windows, so the kernels sum z over a tile once and add tile sums into windows
// afterwards (forward), or give every pixel of a tile the same pooled gradient (backward).
#pragma once

#include <cmath>
#include <cstdint>

#include "common/macros.h"

namespace perceptual_ext {
namespace rff_patch {

// Reflect an index t in [-(n-1), 2(n-1)] into [0, n) without repeating the edge (F.pad 'reflect').
PE_HOST_DEVICE PE_INLINE int64_t reflect(int64_t t, int64_t n) {
  if (t < 0) t = -t;
  if (t >= n) t = 2 * (n - 1) - t;
  return t;
}

PE_HOST_DEVICE PE_INLINE int64_t padding(int64_t patch) { return patch / 2; }

// Side of the feature map along an image side of n pixels.
PE_HOST_DEVICE PE_INLINE int64_t map_size(int64_t n, int64_t patch) { return n + 2 * padding(patch) - patch + 1; }

// Windows along a map side of `length` pixels; 0 when the window does not fit.
PE_HOST_DEVICE PE_INLINE int64_t num_windows(int64_t length, int64_t window, int64_t stride) {
  return length >= window ? (length - window) / stride + 1 : 0;
}

// Flat index of patch element (c, dy, dx) in weight[f] and in a gathered patch row.
PE_HOST_DEVICE PE_INLINE int64_t patch_index(int64_t c, int64_t dy, int64_t dx, int64_t patch) {
  return (c * patch + dy) * patch + dx;
}

// Image coordinate of patch offset d at map coordinate i.
PE_HOST_DEVICE PE_INLINE int64_t source(int64_t i, int64_t d, int64_t patch, int64_t n) {
  return reflect(i + d - padding(patch), n);
}

// The map coordinates i whose patch offset d reads image coordinate y (up to 3: the direct one
// and its mirror images at either edge). Writes them to `out` and returns how many. Backward
// gathers through this instead of scattering, so no two threads write the same input pixel.
PE_HOST_DEVICE PE_INLINE int sources_of(int64_t y, int64_t d, int64_t patch, int64_t n, int64_t map_len,
                                        int64_t* out) {
  const int64_t shift = padding(patch) - d;  // i = t + shift for the unreflected index t
  int count = 0;
  const int64_t direct = y + shift;
  if (direct >= 0 && direct < map_len) out[count++] = direct;
  if (y > 0) {  // t = -y reflects to y
    const int64_t i = -y + shift;
    if (i >= 0 && i < map_len) out[count++] = i;
  }
  if (y < n - 1) {  // t = 2(n-1) - y reflects to y
    const int64_t i = 2 * (n - 1) - y + shift;
    if (i >= 0 && i < map_len) out[count++] = i;
  }
  return count;
}

// Segment boundaries along one axis: the sorted union of window starts a S and ends a S + W,
// a < windows. Writes at most 2 * windows values to `bounds`; returns how many. Segment s is
// [bounds[s], bounds[s + 1]).
PE_HOST_DEVICE PE_INLINE int64_t segment_bounds(int64_t windows, int64_t window, int64_t stride, int64_t* bounds) {
  int64_t count = 0, a = 0, e = 0;  // next start a*S, next end e*S + W
  while (a < windows || e < windows) {
    const int64_t start = a < windows ? a * stride : INT64_MAX;
    const int64_t end = e < windows ? e * stride + window : INT64_MAX;
    const int64_t next = start < end ? start : end;
    if (start == next) ++a;
    if (end == next) ++e;
    if (count == 0 || bounds[count - 1] != next) bounds[count++] = next;
  }
  return count;
}

// Windows [first, last] that contain the whole segment [begin, end); first > last when none do
// (a gap between windows when S > W).
struct WindowRange {
  int64_t first;
  int64_t last;
  PE_HOST_DEVICE bool empty() const { return first > last; }
};

PE_HOST_DEVICE PE_INLINE WindowRange windows_of(int64_t begin, int64_t end, int64_t windows, int64_t window,
                                               int64_t stride) {
  // a S <= begin and a S + W >= end
  int64_t last = begin / stride;
  const int64_t lack = end - window;
  int64_t first = lack <= 0 ? 0 : (lack + stride - 1) / stride;
  if (last > windows - 1) last = windows - 1;
  return {first, last};
}

// Whether a segment with window range r lies inside window a.
PE_HOST_DEVICE PE_INLINE bool segment_in_window(const WindowRange& r, int64_t a) {
  return r.first <= a && a <= r.last;
}

// Average pooling weight of one pixel in one window.
PE_HOST_DEVICE PE_INLINE double pool_weight(int64_t window) {
  return 1.0 / (static_cast<double>(window) * static_cast<double>(window));
}

// u = w_f . p + b_f over k patch elements.
template <typename T>
PE_HOST_DEVICE PE_INLINE T projection(const T* w, const T* p, int64_t k, T bias) {
  T u = bias;
  for (int64_t i = 0; i < k; ++i) u += w[i] * p[i];
  return u;
}

// The feature z = cos(u) and its derivative dz/du = -sin(u), accurate (no fast-math intrinsics).
PE_HOST_DEVICE PE_INLINE float feature(float u) { return cosf(u); }
PE_HOST_DEVICE PE_INLINE double feature(double u) { return cos(u); }
PE_HOST_DEVICE PE_INLINE float feature_derivative(float u) { return -sinf(u); }
PE_HOST_DEVICE PE_INLINE double feature_derivative(double u) { return -sin(u); }

// Pooled feature of window (a, b) from tile sums: sums points at sums[n, 0, 0, f] of a
// [.., row segments, col segments, F] array; the window holds row segments [rs0, rs1] and col
// segments [cs0, cs1].
template <typename T>
PE_HOST_DEVICE PE_INLINE T window_mean(const T* sums, int64_t col_segments, int64_t features, int64_t rs0,
                                       int64_t rs1, int64_t cs0, int64_t cs1, int64_t window) {
  T total = 0;
  for (int64_t rs = rs0; rs <= rs1; ++rs)
    for (int64_t cs = cs0; cs <= cs1; ++cs) total += sums[(rs * col_segments + cs) * features];
  return total * static_cast<T>(pool_weight(window));
}

// d loss / d z_f shared by every pixel of a tile: the sum of the pooled gradients of the
// windows that hold the tile, / W^2. grad points at grad[n, f, 0, 0] of [.., h', w'].
template <typename T>
PE_HOST_DEVICE PE_INLINE T tile_gradient(const T* grad, int64_t pooled_w, WindowRange rows, WindowRange cols,
                                         int64_t window) {
  T total = 0;
  for (int64_t a = rows.first; a <= rows.last; ++a)
    for (int64_t b = cols.first; b <= cols.last; ++b) total += grad[a * pooled_w + b];
  return total * static_cast<T>(pool_weight(window));
}

// d loss / d x[c, y, x] from the per-pixel patch gradients dpatches [map_h * map_w, K] of one
// image: col2im with reflection, as a gather over every (pixel, offset) that reads (y, x).
template <typename T>
PE_HOST_DEVICE PE_INLINE T input_gradient(const T* dpatches, int64_t c, int64_t y, int64_t x, int64_t patch,
                                          int64_t height, int64_t width, int64_t map_h, int64_t map_w,
                                          int64_t k_total) {
  int64_t rows[3], cols[3];
  T total = 0;
  for (int64_t dy = 0; dy < patch; ++dy) {
    const int nr = sources_of(y, dy, patch, height, map_h, rows);
    for (int64_t dx = 0; dx < patch; ++dx) {
      const int nc = sources_of(x, dx, patch, width, map_w, cols);
      const int64_t k = patch_index(c, dy, dx, patch);
      for (int r = 0; r < nr; ++r)
        for (int q = 0; q < nc; ++q) total += dpatches[(rows[r] * map_w + cols[q]) * k_total + k];
    }
  }
  return total;
}

}  // namespace rff_patch
}  // namespace perceptual_ext
