// Colorization cross-entropy with soft-encoded targets (Zhang, Isola, Efros 2016), the maths
// shared by the CPU and CUDA kernels.
//
// Per pixel with logits l[Q] and target colour (a, b):
//   the k nearest bins q_1..q_k of (a, b) (squared distances d_1 <= ... <= d_k; ties: lower bin
//   index first), found by a search over the bins' grid in growing square rings, never by the
//   distances to all Q bins;
//   soft encoding Z_j = exp(-(d_j - d_1) / 2 sigma^2) / sum_i exp(-(d_i - d_1) / 2 sigma^2)
//   (the shift by d_1 leaves the normalized weights unchanged and never underflows to 0/0);
//   loss = v * (logsumexp(l) - sum_j Z_j l_{q_j}),   v = weight[q_1] (1 without weights);
//   d loss / d l_q = v * (softmax(l)_q - Z_q).
// A pixel whose (a, b) is not finite has loss NaN and gradient NaN.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/macros.h"

namespace perceptual_ext {
namespace soft_encoded_cross_entropy {

// Most neighbours a soft encoding may use (registers per thread on the GPU).
constexpr int kMaxNeighbors = 32;
// How far (in grid steps) a bin may sit from its cell's centre.
constexpr double kCentreTolerance = 1e-6;

// The bins as cells of a regular square grid: bin centre (a0 + i*step, b0 + j*step) for the cell
// (i, j) with index[i * cols + j] >= 0 (that bin's row in `bins`); -1 where the grid has no bin.
struct Grid {
  double a0, b0, step;
  int64_t rows, cols;
  const int32_t* index;

  PE_HOST_DEVICE int32_t bin(int64_t i, int64_t j) const {
    return (i < 0 || j < 0 || i >= rows || j >= cols) ? -1 : index[i * cols + j];
  }
  // Nearest cell index along one axis, clamped to the grid.
  PE_HOST_DEVICE static int64_t cell(double v, double origin, double step, int64_t size) {
    const double c = std::floor((v - origin) / step + 0.5);
    if (!(c > 0.0)) return 0;
    if (c >= static_cast<double>(size - 1)) return size - 1;
    return static_cast<int64_t>(c);
  }
};

// The k best (distance, bin) pairs seen so far, kept sorted by (distance, bin).
template <typename T>
struct Nearest {
  int count = 0;
  int32_t bin[kMaxNeighbors];
  T dist2[kMaxNeighbors];

  PE_HOST_DEVICE static bool before(T d, int32_t q, T other_d, int32_t other_q) {
    return d < other_d || (d == other_d && q < other_q);
  }
  PE_HOST_DEVICE void offer(T d, int32_t q, int k) {
    if (count == k && !before(d, q, dist2[k - 1], bin[k - 1])) return;
    int pos = count < k ? count++ : k - 1;
    while (pos > 0 && before(d, q, dist2[pos - 1], bin[pos - 1])) {
      dist2[pos] = dist2[pos - 1];
      bin[pos] = bin[pos - 1];
      --pos;
    }
    dist2[pos] = d;
    bin[pos] = q;
  }
};

// Squared distance from (a, b) to bin q of bins [Q, 2] (row-major), in the input's precision,
// in the order the reference composition computes it.
template <typename T>
PE_HOST_DEVICE PE_INLINE T distance2(const T* bins, int32_t q, T a, T b) {
  const T da = a - bins[2 * q], db = b - bins[2 * q + 1];
  return da * da + db * db;
}

// The k nearest bins of (a, b): visits the rings r = 0, 1, 2, ... of cells around the nearest
// (clamped) cell. Every cell outside rings 0..r lies at least (r + 1/2) * step away along one
// axis, so the search stops once k bins are found no farther than that. Bins must sit on their
// grid cells' centres (the host checks this), k <= number of bins.
template <typename T>
PE_HOST_DEVICE void find_nearest(const Grid& grid, const T* bins, T a, T b, int k, Nearest<T>& out) {
  out.count = 0;
  const int64_t ci = Grid::cell(static_cast<double>(a), grid.a0, grid.step, grid.rows);
  const int64_t cj = Grid::cell(static_cast<double>(b), grid.b0, grid.step, grid.cols);
  const int64_t last = grid.rows > grid.cols ? grid.rows : grid.cols;
  for (int64_t r = 0; r <= last; ++r) {
    for (int64_t i = ci - r; i <= ci + r; ++i) {
      if (i < 0 || i >= grid.rows) continue;
      const bool edge_row = (i == ci - r || i == ci + r);
      const int64_t step_j = edge_row ? 1 : 2 * r;
      for (int64_t j = cj - r; j <= cj + r; j += (step_j > 0 ? step_j : 1)) {
        const int32_t q = grid.bin(i, j);
        if (q >= 0) out.offer(distance2(bins, q, a, b), q, k);
      }
    }
    if (out.count == k) {
      // Strictly closer than any unvisited cell (ties may still come from the next ring); the
      // margin covers bins that sit within the host's tolerance of their cell centre.
      const double reach = (static_cast<double>(r) + 0.5 - kCentreTolerance) * grid.step;
      if (static_cast<double>(out.dist2[k - 1]) < reach * reach) break;
    }
  }
}

// Soft-encoding weights Z_j of the found neighbours (normalized Gaussian of the distances).
template <typename T>
PE_HOST_DEVICE void gaussian_weights(const Nearest<T>& n, T sigma, T* z) {
  const T inv = T(1) / (T(2) * sigma * sigma);
  T total = T(0);
  for (int j = 0; j < n.count; ++j) {
    z[j] = std::exp(-(n.dist2[j] - n.dist2[0]) * inv);
    total += z[j];
  }
  for (int j = 0; j < n.count; ++j) z[j] /= total;
}

// log sum_q exp(l_q) for logits at l[q * stride], two passes (max, then the shifted sum).
template <typename T>
PE_HOST_DEVICE T logsumexp(const T* l, int64_t stride, int64_t classes) {
  T m = l[0];
  for (int64_t q = 1; q < classes; ++q) {
    const T v = l[q * stride];
    m = (v > m || v != v) ? v : m;  // NaN propagates
  }
  if (!(m - m == T(0))) return m;  // the max is +-inf or NaN: it is the answer
  T s = T(0);
  for (int64_t q = 0; q < classes; ++q) s += std::exp(l[q * stride] - m);
  return m + std::log(s);
}

// The rebalancing weight of a pixel: weight[nearest bin], or 1 without weights.
template <typename T>
PE_HOST_DEVICE PE_INLINE T rebalance(const T* weights, const Nearest<T>& n) {
  return weights ? weights[n.bin[0]] : T(1);
}

// sum_j Z_j l_{q_j}: the target's expected logit.
template <typename T>
PE_HOST_DEVICE PE_INLINE T target_logit(const T* l, int64_t stride, const Nearest<T>& n, const T* z) {
  T s = T(0);
  for (int j = 0; j < n.count; ++j) s += z[j] * l[static_cast<int64_t>(n.bin[j]) * stride];
  return s;
}

// Loss of one pixel from its log-sum-exp.
template <typename T>
PE_HOST_DEVICE PE_INLINE T pixel_loss(T v, T lse, T target) {
  return v * (lse - target);
}

// The softmax part of the gradient of one logit: scale * exp(l - lse), scale = grad * v.
template <typename T>
PE_HOST_DEVICE PE_INLINE T softmax_grad(T scale, T logit, T lse) {
  return scale * std::exp(logit - lse);
}

// The soft-encoded target of one pixel: its neighbours, their weights Z and the rebalancing
// weight v. A non-finite (a, b) gives no neighbours and v = NaN (loss and gradient NaN).
template <typename T>
struct Target {
  Nearest<T> nearest;
  T z[kMaxNeighbors];
  T v;
};

template <typename T>
PE_HOST_DEVICE void encode(const Grid& grid, const T* bins, const T* weights, T a, T b, int k, T sigma, Target<T>& t) {
  if (!(a - a == T(0) && b - b == T(0))) {
    t.nearest.count = 0;
    t.v = T(NAN);
    return;
  }
  find_nearest(grid, bins, a, b, k, t.nearest);
  gaussian_weights(t.nearest, sigma, t.z);
  t.v = rebalance(weights, t.nearest);
}

}  // namespace soft_encoded_cross_entropy
}  // namespace perceptual_ext
