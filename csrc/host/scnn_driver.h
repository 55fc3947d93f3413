// Host side of the fused S-CNN, shared by the CPU and CUDA kernels: argument checks and
// preparation, and the work of one pixel tile. Both walk the same pixel tiles (CUDA in order,
// through for_each_tile_in_order below; CPU in one parallel loop of its own) and hand every layer
// product to BLAS (MKL/OpenBLAS or cuBLAS) through ATen; they differ only in the elementwise
// passes, supplied by a `Kernels` policy:
//
//   im2col(image[Cin,H,W], cols[t,K], geometry, p0, patch_norm)   patch columns of tile pixels
//   relu_pack(act[t,C], mask[t,words] or undefined)               ReLU in place (+ its bits)
//   pool_accumulate(act[t,C], acc[ph,pw,C] double, geometry, p0)  acc += window sums of the tile
//   pool_grad(g[ph,pw,C], dact[t,C], geometry, p0)                d act = sum of its windows' g
//   apply_mask(dact[t,C], mask[t,words])                          zero where the ReLU was off
//   patch_norm_backward(image, dcols[t,K], geometry, p0)          adjoint of the normalization
//   col2im_accumulate(dcols[t,K], dimage[Cin,H,W], geometry, p0)  dimage += adjoint of im2col
//
// Memory: two [t, C] activation buffers, and for backward one bit per activation (the ReLU masks,
// [N, D+1, Hc*Wc, ceil(C/32)] int32). Backward needs no activations: the weights are constants,
// so d h_{l-1} = (d h_l * mask_l) W_l, one GEMM per layer as in the plain composition's backward.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <tuple>
#include <utility>

#include "host/checks.h"
#include "common/scnn.h"

namespace perceptual_ext {
namespace scnn {

inline Geometry check_and_describe(const at::Tensor& x, const at::Tensor& first_weight, const at::Tensor& weights,
                                   int64_t window, int64_t stride, const char* op) {
  check_rank(x, 4, op, "x", "[N, C_in, H, W]");
  check_rank(first_weight, 4, op, "first_weight", "[C, C_in, P, P]");
  check_rank(weights, 3, op, "weights", "[D, C, C]");
  check_same(x, first_weight, op, "x", "first_weight");
  check_same(x, weights, op, "x", "weights");
  Geometry g{};
  g.batch = x.size(0);
  g.in_channels = x.size(1);
  g.height = x.size(2);
  g.width = x.size(3);
  g.channels = first_weight.size(0);
  g.depth = weights.size(0);
  g.patch = first_weight.size(2);
  g.window = window;
  g.stride = stride;
  TORCH_CHECK(first_weight.size(1) == g.in_channels, op, ": first_weight must be [C, ", g.in_channels,
              ", P, P] for x with ", g.in_channels, " channels, got ", first_weight.sizes());
  TORCH_CHECK(first_weight.size(3) == g.patch && g.patch % 2 == 1, op,
              ": first_weight must have an odd square kernel P x P, got ", first_weight.sizes());
  TORCH_CHECK(weights.size(1) == g.channels && weights.size(2) == g.channels, op, ": weights must be [D, ", g.channels,
              ", ", g.channels, "], got ", weights.sizes());
  TORCH_CHECK(window >= 1 && stride >= 1, op, ": window and stride must be >= 1, got ", window, " and ", stride);
  TORCH_CHECK(g.height >= window && g.width >= window, op, ": x (", g.height, " x ", g.width,
              ") must be at least the pooling window (", window, " x ", window, ")");
  g.pooled_h = pooled_size(g.height, window, stride);
  g.pooled_w = pooled_size(g.width, window, stride);
  g.covered_h = covered_size(g.pooled_h, window, stride);
  g.covered_w = covered_size(g.pooled_w, window, stride);
  return g;
}

// Argument checks of scnn_features / scnn_features_backward (shared by every device's kernels).
inline Geometry check_forward(const at::Tensor& x, const at::Tensor& first_weight, const at::Tensor& first_bias,
                              const at::Tensor& weights, const at::Tensor& biases, int64_t window, int64_t stride) {
  const char* op = "scnn_features";
  const Geometry g = check_and_describe(x, first_weight, weights, window, stride, op);
  check_like(first_bias, "first_bias", {g.channels}, x, "x", op);
  check_like(biases, "biases", {g.depth, g.channels}, x, "x", op);
  return g;
}

inline Geometry check_backward(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& first_weight,
                               const at::Tensor& weights, const at::Tensor& masks, int64_t window, int64_t stride) {
  const char* op = "scnn_features_backward";
  const Geometry g = check_and_describe(x, first_weight, weights, window, stride, op);
  check_like(grad, "grad", {g.batch, g.channels, g.pooled_h, g.pooled_w}, x, "x", op);
  TORCH_CHECK(masks.scalar_type() == at::kInt && masks.device() == x.device(), op, ": masks must be int32 on ",
              x.device());
  TORCH_CHECK(masks.dim() == 4 && masks.size(0) == g.batch && masks.size(1) == g.depth + 1 &&
                  masks.size(2) == g.covered_pixels() && masks.size(3) == g.words(),
              op, ": masks must be [", g.batch, ", ", g.depth + 1, ", ", g.covered_pixels(), ", ", g.words(),
              "] (saved by scnn_features with save_masks=True), got ", masks.sizes());
  return g;
}

// Pixels per tile: equal tiles (no tiny remainder tile, whose fixed costs are wasted) of at most
// `max_elements` values per [t, C] activation buffer and per [t, C_in P^2] column buffer (the
// wider of the two sets the tile: C = 16 activations would otherwise let a C_in = 3, P = 11
// column buffer reach 1.5 GB at 1024²), and at least `min_tiles` of them unless a tile would drop
// below `min_elements` (bigger GEMMs run faster; several tiles keep a small image's peak memory a
// small fraction of the composition's).
struct TileSize {
  int64_t min_elements;
  int64_t max_elements;
  int64_t min_tiles;
};

inline int64_t tile_pixels(const Geometry& g, TileSize size) {
  const int64_t c = std::max<int64_t>({1, g.channels, g.column_length()}),
                pixels = std::max<int64_t>(1, g.covered_pixels());
  const int64_t lo = std::max<int64_t>(1, size.min_elements / c), hi = std::max<int64_t>(lo, size.max_elements / c);
  const int64_t tiles = std::max((pixels + hi - 1) / hi, std::min(size.min_tiles, (pixels + lo - 1) / lo));
  return (pixels + tiles - 1) / tiles;
}

// Window rows first .. last (inclusive) that contain a pixel of tile [p0, p0 + t); none when
// first > last.
struct WindowRows {
  int64_t first, last;
};
inline WindowRows window_rows(const Geometry& g, int64_t p0, int64_t t) {
  return {first_window(p0 / g.covered_w, g.window, g.stride),
          last_window((p0 + t - 1) / g.covered_w, g.stride, g.pooled_h)};
}

// Input pixels the patches of tile [p0, p0 + t) read: rows [y_begin, y_end) within P/2 of the
// tile's rows, columns [0, x_end).
struct InputRegion {
  int64_t y_begin, y_end, x_end;
  int64_t rows() const { return y_end - y_begin; }
};
inline InputRegion input_region(const Geometry& g, int64_t p0, int64_t t) {
  const int64_t r = g.patch / 2;
  return {std::max<int64_t>(0, p0 / g.covered_w - r), std::min(g.height, (p0 + t - 1) / g.covered_w + r + 1),
          std::min(g.width, g.covered_w + r)};
}

// ---- what every device's tile loop shares -------------------------------------------------
// The checked, contiguous arguments of one call, and its results before the tiles run. A device
// walks the (image, tile) pairs its own way (CUDA: in order; CPU: one parallel loop) and calls
// forward_tile / backward_tile on each with buffers of its own.

struct ForwardCall {
  Geometry g;
  at::Tensor x, weights, w0;  // contiguous; w0 is the first layer as a [C, C_in * P * P] matrix
  at::Tensor first_bias, biases;
  at::Tensor acc;    // [N, ph, pw, C] float64 window sums
  at::Tensor masks;  // [N, D + 1, Hc * Wc, words] int32, or empty without save_masks
  bool save_masks;
  bool has_work() const { return g.batch > 0 && g.channels > 0; }
};

inline ForwardCall prepare_forward(const at::Tensor& x, const at::Tensor& first_weight, const at::Tensor& first_bias,
                                   const at::Tensor& weights, const at::Tensor& biases, int64_t window, int64_t stride,
                                   bool save_masks) {
  ForwardCall call{check_forward(x, first_weight, first_bias, weights, biases, window, stride)};
  const Geometry& g = call.g;
  call.x = x.contiguous();
  call.weights = weights.contiguous();
  call.w0 = first_weight.contiguous().view({g.channels, g.column_length()});
  call.first_bias = first_bias;
  call.biases = biases;
  const auto options = call.x.options();
  call.acc = at::zeros({g.batch, g.pooled_h, g.pooled_w, g.channels}, options.dtype(at::kDouble));
  call.masks = save_masks ? at::empty({g.batch, g.depth + 1, g.covered_pixels(), g.words()}, options.dtype(at::kInt))
                          : at::empty({0}, options.dtype(at::kInt));
  call.save_masks = save_masks;
  return call;
}

// The window averages [N, C, ph, pw] in x's dtype, and the masks.
inline std::tuple<at::Tensor, at::Tensor> finish_forward(ForwardCall& call) {
  const double inv_area = 1.0 / static_cast<double>(call.g.window * call.g.window);
  auto out = call.acc.mul_(inv_area).permute({0, 3, 1, 2}).to(call.x.scalar_type()).contiguous();
  return {out, call.masks};
}

struct BackwardCall {
  Geometry g;
  at::Tensor x, weights, w0, masks;  // contiguous, w0 as in ForwardCall
  at::Tensor pooled_grad;            // [N, ph, pw, C] in x's dtype, 1/W^2 folded in; undefined without work
  at::Tensor dx;                     // zeros like x
  bool has_work() const { return g.batch > 0 && g.channels > 0; }
};

inline BackwardCall prepare_backward(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& first_weight,
                                     const at::Tensor& weights, const at::Tensor& masks, int64_t window,
                                     int64_t stride) {
  BackwardCall call{check_backward(grad, x, first_weight, weights, masks, window, stride)};
  const Geometry& g = call.g;
  call.x = x.contiguous();
  call.weights = weights.contiguous();
  call.masks = masks.contiguous();
  call.w0 = first_weight.contiguous().view({g.channels, g.column_length()});
  call.dx = at::zeros_like(call.x);
  // Pixel-major window gradients, the 1/W^2 of the average folded in once.
  if (call.has_work())
    call.pooled_grad = (grad.permute({0, 2, 3, 1}) * (1.0 / static_cast<double>(window * window)))
                           .to(call.x.scalar_type())
                           .contiguous();
  return call;
}

// Work buffers of one tile loop: the patch columns [t, C_in * P * P] and two [t, C] activations
// (forward), or their gradients (backward).
struct TileBuffers {
  at::Tensor cols, act, next;
  TileBuffers(const Geometry& g, int64_t tile, const at::TensorOptions& options)
      : cols(at::empty({tile, g.column_length()}, options)),
        act(at::empty({tile, g.channels}, options)),
        next(at::empty({tile, g.channels}, options)) {}
};

// Tile [p0, p0 + t) of image n through every layer; its window sums added to `sums_n` ([ph, pw, C]).
template <class Kernels>
void forward_tile(const ForwardCall& call, TileBuffers& buffers, at::Tensor sums_n, int64_t n, int64_t p0, int64_t t,
                  bool patch_norm) {
  const Geometry& g = call.g;
  auto mask_of = [&](int64_t layer) {
    return call.save_masks ? call.masks.select(0, n).select(0, layer).narrow(0, p0, t) : at::Tensor();
  };
  auto c = buffers.cols.narrow(0, 0, t);
  auto a = buffers.act.narrow(0, 0, t);
  auto b = buffers.next.narrow(0, 0, t);
  Kernels::im2col(call.x.select(0, n), c, g, p0, patch_norm);
  at::addmm_out(a, call.first_bias, c, call.w0.t());
  Kernels::relu_pack(a, mask_of(0));
  for (int64_t l = 0; l < g.depth; ++l) {
    at::addmm_out(b, call.biases.select(0, l), a, call.weights.select(0, l).t());
    Kernels::relu_pack(b, mask_of(l + 1));
    std::swap(a, b);
  }
  Kernels::pool_accumulate(a, sums_n, g, p0);
}

// Gradient of tile [p0, p0 + t) of image n back through every layer; added to `dx_n` ([C_in, H, W]).
template <class Kernels>
void backward_tile(const BackwardCall& call, TileBuffers& buffers, at::Tensor dx_n, int64_t n, int64_t p0, int64_t t,
                   bool patch_norm) {
  const Geometry& g = call.g;
  auto mask_of = [&](int64_t layer) { return call.masks.select(0, n).select(0, layer).narrow(0, p0, t); };
  auto a = buffers.act.narrow(0, 0, t);
  auto b = buffers.next.narrow(0, 0, t);
  auto c = buffers.cols.narrow(0, 0, t);
  Kernels::pool_grad(call.pooled_grad.select(0, n), a, g, p0);
  for (int64_t l = g.depth; l >= 1; --l) {
    Kernels::apply_mask(a, mask_of(l));
    at::mm_out(b, a, call.weights.select(0, l - 1));
    std::swap(a, b);
  }
  Kernels::apply_mask(a, mask_of(0));
  at::mm_out(c, a, call.w0);
  const auto image = call.x.select(0, n);
  if (patch_norm) Kernels::patch_norm_backward(image, c, g, p0);
  Kernels::col2im_accumulate(c, dx_n, g, p0);
}

// ---- the plain tile loop (CUDA) ----------------------------------------------------------

// Every (image n, tile [p0, p0 + t)) in order, through one set of buffers.
template <class Body>
void for_each_tile_in_order(const Geometry& g, int64_t tile, const at::TensorOptions& options, const Body& body) {
  TileBuffers buffers(g, tile, options);
  for (int64_t n = 0; n < g.batch; ++n)
    for (int64_t p0 = 0; p0 < g.covered_pixels(); p0 += tile)
      body(buffers, n, p0, std::min(tile, g.covered_pixels() - p0));
}

template <class Kernels>
std::tuple<at::Tensor, at::Tensor> forward(const at::Tensor& x, const at::Tensor& first_weight,
                                           const at::Tensor& first_bias, const at::Tensor& weights,
                                           const at::Tensor& biases, int64_t window, int64_t stride, bool patch_norm,
                                           bool save_masks, TileSize tile_size) {
  ForwardCall call = prepare_forward(x, first_weight, first_bias, weights, biases, window, stride, save_masks);
  if (call.has_work())
    for_each_tile_in_order(call.g, tile_pixels(call.g, tile_size), call.x.options(),
                           [&](TileBuffers& buffers, int64_t n, int64_t p0, int64_t t) {
                             forward_tile<Kernels>(call, buffers, call.acc.select(0, n), n, p0, t, patch_norm);
                           });
  return finish_forward(call);
}

template <class Kernels>
at::Tensor backward(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& first_weight,
                    const at::Tensor& weights, const at::Tensor& masks, int64_t window, int64_t stride, bool patch_norm,
                    TileSize tile_size) {
  BackwardCall call = prepare_backward(grad, x, first_weight, weights, masks, window, stride);
  if (call.has_work())
    for_each_tile_in_order(call.g, tile_pixels(call.g, tile_size), call.x.options(),
                           [&](TileBuffers& buffers, int64_t n, int64_t p0, int64_t t) {
                             backward_tile<Kernels>(call, buffers, call.dx.select(0, n), n, p0, t, patch_norm);
                           });
  return call.dx;
}

}  // namespace scnn
}  // namespace perceptual_ext
