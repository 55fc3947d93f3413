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
// The segments have a closed form (segment_bound), so a kernel computes any tile's geometry from
// a few integers passed by value (Axis): no index table is built on the host or copied to a device.
//
// Accumulation (both devices): a tile's z are summed in the input dtype over parts of at most
// kPartPixels pixels, and the parts are added in double.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/macros.h"
#include "common/pooling.h"

namespace perceptual_ext {
namespace rff_patch {

// Reflect an index t in [-(n-1), 2(n-1)] into [0, n) without repeating the edge (F.pad 'reflect').
PE_HOST_DEVICE PE_INLINE int64_t reflect(int64_t t, int64_t n) {
  if (t < 0) t = -t;
  if (t >= n) t = 2 * (n - 1) - t;
  return t;
}

PE_HOST_DEVICE PE_INLINE int64_t padding(int64_t patch) {
  return patch / 2;
}

// Side of the feature map along an image side of n pixels.
PE_HOST_DEVICE PE_INLINE int64_t map_size(int64_t n, int64_t patch) {
  return n + 2 * padding(patch) - patch + 1;
}

// Windows along a map side: the one rule of common/pooling.h.
using ::perceptual_ext::pooled_size;

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
PE_HOST_DEVICE PE_INLINE int sources_of(int64_t y, int64_t d, int64_t patch, int64_t n, int64_t map_len, int64_t* out) {
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

// The same boundaries in closed form: with W = q S + r, the window starts are k S for k in
// [0, n) and the ends k S + r for k in [q, n - 1 + q]. In increasing order that is: starts alone
// (k < min(q, n)), then for k in [q, n) a start and an end (one value when r = 0), then ends
// alone (k in [max(n, q), n - 1 + q]). Kernels call these per tile instead of reading a table.
struct BoundaryPhases {
  int64_t q, r, starts_only, shared, per_shared, ends_only;
};

PE_HOST_DEVICE PE_INLINE BoundaryPhases boundary_phases(int64_t windows, int64_t window, int64_t stride) {
  BoundaryPhases b;
  b.q = window / stride;
  b.r = window % stride;
  b.starts_only = b.q < windows ? b.q : windows;
  b.shared = windows > b.q ? windows - b.q : 0;
  b.per_shared = b.r > 0 ? 2 : 1;
  b.ends_only = b.starts_only;  // min(n, q)
  return b;
}

// Number of segments (boundaries - 1); 0 without windows.
PE_HOST_DEVICE PE_INLINE int64_t segment_count(int64_t windows, int64_t window, int64_t stride) {
  if (windows <= 0) return 0;
  const BoundaryPhases b = boundary_phases(windows, window, stride);
  return b.starts_only + b.per_shared * b.shared + b.ends_only - 1;
}

// Boundary s (0 <= s <= segment_count): segment s is [segment_bound(s), segment_bound(s + 1)).
PE_HOST_DEVICE PE_INLINE int64_t segment_bound(int64_t s, int64_t windows, int64_t window, int64_t stride) {
  const BoundaryPhases b = boundary_phases(windows, window, stride);
  if (s < b.starts_only) return s * stride;
  s -= b.starts_only;
  if (s < b.per_shared * b.shared) return (b.q + s / b.per_shared) * stride + (s % b.per_shared) * b.r;
  s -= b.per_shared * b.shared;
  return ((windows > b.q ? windows : b.q) + s) * stride + b.r;
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

// Segments [first, last] inside window a (the inverse of windows_of): window a is [a S, a S + W),
// from the boundary of its start to the one before the boundary of its end.
PE_HOST_DEVICE PE_INLINE WindowRange segments_of_window(int64_t a, int64_t windows, int64_t window, int64_t stride) {
  const BoundaryPhases b = boundary_phases(windows, window, stride);
  const int64_t start = a < b.q ? a : b.starts_only + b.per_shared * (a - b.q);
  const int64_t k = a + b.q;  // the end of window a is k S + r
  const int64_t end = k < windows ? b.starts_only + b.per_shared * (k - b.q) + (b.per_shared - 1)
                                  : b.starts_only + b.per_shared * b.shared + (k - (windows > b.q ? windows : b.q));
  return {start, end - 1};
}

// One axis of the tiling, plain values (kernels take it by value).
struct Axis {
  int64_t image;    // image side
  int64_t map;      // feature-map side
  int64_t windows;  // pooled side
  int64_t window, stride;

  PE_HOST_DEVICE int64_t segments() const { return segment_count(windows, window, stride); }
  PE_HOST_DEVICE int64_t begin(int64_t s) const { return segment_bound(s, windows, window, stride); }
  PE_HOST_DEVICE int64_t size(int64_t s) const { return begin(s + 1) - begin(s); }
  // Windows that hold segment s (empty in a gap between windows, S > W).
  PE_HOST_DEVICE WindowRange range(int64_t s) const {
    return windows_of(begin(s), begin(s + 1), windows, window, stride);
  }
  // Segments inside window a.
  PE_HOST_DEVICE WindowRange segments_of(int64_t a) const { return segments_of_window(a, windows, window, stride); }
};

PE_HOST_DEVICE PE_INLINE Axis make_axis(int64_t image, int64_t patch, int64_t window, int64_t stride) {
  const int64_t map = map_size(image, patch);
  return Axis{image, map, pooled_size(map, window, stride), window, stride};
}

// One segment x segment tile of image n: map rows [row0, row0 + rows), columns [col0, col0 + cols),
// all in the windows rows x cols. Tiles are numbered image by image, row segment by row segment.
struct Tile {
  int64_t n, row_segment, col_segment, row0, rows, col0, cols;
  WindowRange row_windows, col_windows;

  PE_HOST_DEVICE int64_t pixels() const { return rows * cols; }
  // Whether any window holds the tile (else its pixels feed nothing and get no gradient).
  PE_HOST_DEVICE bool pooled() const { return !row_windows.empty() && !col_windows.empty(); }
  // Map coordinates of the tile's pixel t (row-major inside the tile).
  PE_HOST_DEVICE int64_t row_of(int64_t t) const { return row0 + t / cols; }
  PE_HOST_DEVICE int64_t col_of(int64_t t) const { return col0 + t % cols; }
};

PE_HOST_DEVICE PE_INLINE Tile tile_of(const Axis& rows, const Axis& cols, int64_t index) {
  const int64_t col_segments = cols.segments(), per_image = rows.segments() * col_segments;
  Tile t;
  t.n = index / per_image;
  t.row_segment = (index % per_image) / col_segments;
  t.col_segment = index % col_segments;
  t.row0 = rows.begin(t.row_segment);
  t.rows = rows.begin(t.row_segment + 1) - t.row0;
  t.col0 = cols.begin(t.col_segment);
  t.cols = cols.begin(t.col_segment + 1) - t.col0;
  t.row_windows = windows_of(t.row0, t.row0 + t.rows, rows.windows, rows.window, rows.stride);
  t.col_windows = windows_of(t.col0, t.col0 + t.cols, cols.windows, cols.window, cols.stride);
  return t;
}

// Pixels summed in the input dtype into one partial sum; the partial sums of a tile are added in
// double. Float32 then keeps ~1e-7 of a 65536-pixel global window instead of ~1e-5.
constexpr int64_t kPartPixels = 256;

// Parts of a tile of `pixels` pixels.
PE_HOST_DEVICE PE_INLINE int64_t parts_of(int64_t pixels) {
  return (pixels + kPartPixels - 1) / kPartPixels;
}

// Element k of the patch of map pixel (i, j) of one image [C, H, W] (k = patch_index(c, dy, dx)).
template <typename T>
PE_HOST_DEVICE PE_INLINE T patch_element(const T* image, int64_t height, int64_t width, int64_t patch, int64_t i,
                                         int64_t j, int64_t k) {
  const int64_t c = k / (patch * patch), dy = (k / patch) % patch, dx = k % patch;
  return image[(c * height + source(i, dy, patch, height)) * width + source(j, dx, patch, width)];
}

// The whole patch of map pixel (i, j) of one image [C, H, W], in patch_index order: the values
// patch_element gives, one row of reads at a time.
template <typename T>
PE_HOST_DEVICE PE_INLINE void gather_patch(const T* image, int64_t channels, int64_t height, int64_t width,
                                           int64_t patch, int64_t i, int64_t j, T* out) {
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t dy = 0; dy < patch; ++dy) {
      const T* line = image + (c * height + source(i, dy, patch, height)) * width;
      for (int64_t dx = 0; dx < patch; ++dx) out[patch_index(c, dy, dx, patch)] = line[source(j, dx, patch, width)];
    }
}

// Average pooling weight of one pixel in one window.
PE_HOST_DEVICE PE_INLINE double pool_weight(int64_t window) {
  return 1.0 / (static_cast<double>(window) * static_cast<double>(window));
}

// u = w_f . p + b_f over k patch elements, the weights w[i * w_stride] (1 for a row of
// weight [F, K], F for a column of its transpose [K, F]).
template <typename T>
PE_HOST_DEVICE PE_INLINE T projection(const T* w, int64_t w_stride, const T* p, int64_t k, T bias) {
  T u = bias;
  for (int64_t i = 0; i < k; ++i) u += w[i * w_stride] * p[i];
  return u;
}

template <typename T>
PE_HOST_DEVICE PE_INLINE T projection(const T* w, const T* p, int64_t k, T bias) {
  return projection(w, 1, p, k, bias);
}

// projection() for `count` <= P pixels at once, k elements of their patches at a time:
// u[t] += sum_i w[i * w_stride] p[t * p_stride + i]. Each weight is read once for the P pixels,
// and a long patch can be fed in pieces (u carries the sum from one piece to the next).
template <int P, typename T>
PE_HOST_DEVICE PE_INLINE void project_pixels(const T* w, int64_t w_stride, const T* p, int64_t p_stride, int64_t k,
                                             int64_t count, T* u) {
  for (int64_t i = 0; i < k; ++i) {
    const T wi = w[i * w_stride];
    PE_UNROLL
    for (int t = 0; t < P; ++t)
      if (t < count) u[t] += wi * p[t * p_stride + i];
  }
}

// The feature z = cos(u) and its derivative dz/du = -sin(u), accurate (no fast-math intrinsics).
PE_HOST_DEVICE PE_INLINE float feature(float u) {
  return cosf(u);
}
PE_HOST_DEVICE PE_INLINE double feature(double u) {
  return cos(u);
}
PE_HOST_DEVICE PE_INLINE float feature_derivative(float u) {
  return -sinf(u);
}
PE_HOST_DEVICE PE_INLINE double feature_derivative(double u) {
  return -sin(u);
}

// Pooled feature of window (a, b) from tile sums: sums points at sums[n, 0, 0, f] of a
// [.., row segments, col segments, F] array; the window holds row segments [rs0, rs1] and col
// segments [cs0, cs1].
template <typename T>
PE_HOST_DEVICE PE_INLINE T window_mean(const T* sums, int64_t col_segments, int64_t features, int64_t rs0, int64_t rs1,
                                       int64_t cs0, int64_t cs1, int64_t window) {
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
