// Host side of soft_encoded_cross_entropy: argument checks, the bins' grid lookup table, and each
// call's contiguous tensors and outputs (ForwardCall, BackwardCall), shared by the CPU and CUDA kernels.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "common/soft_encoded_cross_entropy.h"
#include "host/checks.h"

namespace perceptual_ext {
namespace soft_encoded_cross_entropy {

// Lookup tables above this many cells are refused (the bins are not a compact grid).
constexpr int64_t kMaxGridCells = int64_t(1) << 22;

// The grid parameters and the cell -> bin table, the table on `device`.
struct HostGrid {
  double a0 = 0, b0 = 0, step = 1;
  int64_t rows = 0, cols = 0;
  at::Tensor index;  // int32 [rows * cols]

  Grid view() const { return Grid{a0, b0, step, rows, cols, index.data_ptr<int32_t>()}; }
};

// Builds the lookup table of bins [Q, 2]: the grid step is the smallest gap between distinct
// coordinates, every bin must sit on a cell centre (within kCentreTolerance steps), no two bins
// in one cell. Reads the Q x 2 bins on the host (one small copy from the GPU).
inline HostGrid make_grid(const at::Tensor& bins, const at::Device& device) {
  const auto b = bins.detach().to(at::kCPU, at::kDouble).contiguous();
  const int64_t q = b.size(0);
  const double* p = b.data_ptr<double>();
  for (int64_t i = 0; i < 2 * q; ++i)
    TORCH_CHECK(std::isfinite(p[i]), "soft_encoded_cross_entropy: bins must be finite");
  HostGrid g;
  double a_min = p[0], a_max = p[0], b_min = p[1], b_max = p[1];
  for (int64_t i = 0; i < q; ++i) {
    a_min = std::min(a_min, p[2 * i]);
    a_max = std::max(a_max, p[2 * i]);
    b_min = std::min(b_min, p[2 * i + 1]);
    b_max = std::max(b_max, p[2 * i + 1]);
  }
  double step = 0;
  for (int axis = 0; axis < 2; ++axis) {
    std::vector<double> v;
    for (int64_t i = 0; i < q; ++i) v.push_back(p[2 * i + axis]);
    std::sort(v.begin(), v.end());
    for (size_t i = 1; i < v.size(); ++i) {
      const double gap = v[i] - v[i - 1];
      if (gap > 1e-9 * std::max(1.0, std::fabs(v[i])) && (step == 0 || gap < step)) step = gap;
    }
  }
  if (step == 0) step = 1;  // a single bin
  g.a0 = a_min;
  g.b0 = b_min;
  g.step = step;
  g.rows = static_cast<int64_t>(std::llround((a_max - a_min) / step)) + 1;
  g.cols = static_cast<int64_t>(std::llround((b_max - b_min) / step)) + 1;
  TORCH_CHECK(g.rows * g.cols <= kMaxGridCells,
              "soft_encoded_cross_entropy: bins must lie on a compact regular grid (their grid would have ", g.rows,
              " x ", g.cols, " cells)");
  auto table = at::full({g.rows * g.cols}, -1, at::TensorOptions().dtype(at::kInt));
  int32_t* t = table.data_ptr<int32_t>();
  for (int64_t i = 0; i < q; ++i) {
    const double fi = (p[2 * i] - a_min) / step, fj = (p[2 * i + 1] - b_min) / step;
    const double ri = std::round(fi), rj = std::round(fj);
    TORCH_CHECK(std::fabs(fi - ri) <= kCentreTolerance && std::fabs(fj - rj) <= kCentreTolerance,
                "soft_encoded_cross_entropy: bins must lie on a regular square grid; bin ", i, " = (", p[2 * i], ", ",
                p[2 * i + 1], ") is off the grid of step ", step, " through (", a_min, ", ", b_min, ")");
    const int64_t cell = static_cast<int64_t>(ri) * g.cols + static_cast<int64_t>(rj);
    TORCH_CHECK(t[cell] < 0, "soft_encoded_cross_entropy: bins ", t[cell], " and ", i, " are the same point");
    t[cell] = static_cast<int32_t>(i);
  }
  g.index = table.to(device);
  return g;
}

// Shapes, dtypes and devices of the op's arguments; returns the number of classes Q.
inline int64_t check_arguments(const at::Tensor& logits, const at::Tensor& ab, const at::Tensor& bins,
                               const at::Tensor& weights, int64_t neighbors, double sigma,
                               std::initializer_list<at::ScalarType> dtypes) {
  const char* op = "soft_encoded_cross_entropy";
  check_rank(logits, 4, op, "logits", "[N, Q, H, W]");
  check_rank(ab, 4, op, "ab", "[N, 2, H, W]");
  check_rank(bins, 2, op, "bins", "[Q, 2]");
  check_rank(weights, 1, op, "weights", "[Q] or [0]");
  check_dtype(logits, dtypes, op, "logits");
  check_same(logits, ab, op, "logits", "ab");
  check_same(logits, bins, op, "logits", "bins");
  check_same(logits, weights, op, "logits", "weights");
  const int64_t q = logits.size(1);
  TORCH_CHECK(q >= 1, op, ": logits must have at least one class, got shape ", logits.sizes());
  TORCH_CHECK(
      ab.size(0) == logits.size(0) && ab.size(1) == 2 && ab.size(2) == logits.size(2) && ab.size(3) == logits.size(3),
      op, ": ab must be [N, 2, H, W] with N, H, W of logits ", logits.sizes(), ", got ", ab.sizes());
  TORCH_CHECK(bins.size(0) == q && bins.size(1) == 2, op, ": bins must be [Q, 2] with Q = ", q,
              " (the channels of logits), got ", bins.sizes());
  TORCH_CHECK(weights.size(0) == q || weights.size(0) == 0, op, ": weights must be [Q] with Q = ", q, " or empty, got ",
              weights.sizes());
  TORCH_CHECK(neighbors >= 1 && neighbors <= std::min<int64_t>(q, kMaxNeighbors), op,
              ": neighbors must be in [1, min(Q, ", kMaxNeighbors, ")], got ", neighbors);
  TORCH_CHECK(sigma > 0 && std::isfinite(sigma), op, ": sigma must be positive and finite, got ", sigma);
  return q;
}

// The backward op's arguments: those of the forward, plus grad and lse, each [N, H, W] like the loss.
inline int64_t check_backward_arguments(const at::Tensor& grad, const at::Tensor& logits, const at::Tensor& ab,
                                        const at::Tensor& bins, const at::Tensor& weights, const at::Tensor& lse,
                                        int64_t neighbors, double sigma) {
  const int64_t classes = check_arguments(logits, ab, bins, weights, neighbors, sigma, {at::kFloat, at::kDouble});
  const char* op = "soft_encoded_cross_entropy_backward";
  check_same(grad, logits, op, "grad", "logits");
  check_same(lse, logits, op, "lse", "logits");
  const auto expected = std::vector<int64_t>{logits.size(0), logits.size(2), logits.size(3)};
  TORCH_CHECK(grad.sizes() == expected, op, ": grad must be [N, H, W] = ", at::IntArrayRef(expected), ", got ",
              grad.sizes());
  TORCH_CHECK(lse.sizes() == expected, op, ": lse must be [N, H, W] = ", at::IntArrayRef(expected), ", got ",
              lse.sizes());
  return classes;
}

// One call's tensors, checked and contiguous, with its outputs allocated (uninitialized) and the
// bins' grid built where there is work: the kernels of both devices start from these.
struct Inputs {
  int64_t classes = 0, n = 0, hw = 0;  // Q, N and the H W pixels of an image
  at::Tensor logits, ab, bins, weights;
  HostGrid grid;  // empty when the output is

  // weights' data, or null for no rebalancing (weights [0]).
  template <typename T>
  const T* weights_data() const {
    return weights.numel() ? weights.data_ptr<T>() : nullptr;
  }
};

inline Inputs contiguous_inputs(int64_t classes, const at::Tensor& logits, const at::Tensor& ab, const at::Tensor& bins,
                                const at::Tensor& weights) {
  Inputs in;
  in.classes = classes;
  in.logits = logits.contiguous();
  in.ab = ab.contiguous();
  in.bins = bins.contiguous();
  in.weights = weights.contiguous();
  in.n = logits.size(0);
  in.hw = logits.size(2) * logits.size(3);
  return in;
}

// The forward op: loss and lse [N, H, W].
struct ForwardCall : Inputs {
  at::Tensor loss, lse;
};

inline ForwardCall forward_call(const at::Tensor& logits, const at::Tensor& ab, const at::Tensor& bins,
                                const at::Tensor& weights, int64_t neighbors, double sigma,
                                std::initializer_list<at::ScalarType> dtypes) {
  const int64_t classes = check_arguments(logits, ab, bins, weights, neighbors, sigma, dtypes);
  ForwardCall c{contiguous_inputs(classes, logits, ab, bins, weights)};
  c.loss = at::empty({c.n, logits.size(2), logits.size(3)}, logits.options());
  c.lse = at::empty_like(c.loss);
  if (c.loss.numel() > 0) c.grid = make_grid(c.bins, logits.device());
  return c;
}

// The backward op: grad and lse [N, H, W] (contiguous) in, out = d logits [N, Q, H, W].
struct BackwardCall : Inputs {
  at::Tensor grad, lse, out;
};

inline BackwardCall backward_call(const at::Tensor& grad, const at::Tensor& logits, const at::Tensor& ab,
                                  const at::Tensor& bins, const at::Tensor& weights, const at::Tensor& lse,
                                  int64_t neighbors, double sigma) {
  const int64_t classes = check_backward_arguments(grad, logits, ab, bins, weights, lse, neighbors, sigma);
  BackwardCall c{contiguous_inputs(classes, logits, ab, bins, weights)};
  c.grad = grad.contiguous();
  c.lse = lse.contiguous();
  c.out = at::empty_like(c.logits);
  if (c.out.numel() > 0) c.grid = make_grid(c.bins, logits.device());
  return c;
}

}  // namespace soft_encoded_cross_entropy
}  // namespace perceptual_ext
