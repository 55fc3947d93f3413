// Host-side tile loop of the fused S-CNN, shared by the CPU and CUDA kernels. Both walk the
// same pixel tiles and hand every layer product to BLAS (MKL/OpenBLAS or cuBLAS) through ATen;
// they differ only in the elementwise passes, supplied by a `Kernels` policy:
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

#include "common/checks.h"
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
  TORCH_CHECK(weights.size(1) == g.channels && weights.size(2) == g.channels, op, ": weights must be [D, ",
              g.channels, ", ", g.channels, "], got ", weights.sizes());
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
  check_same(x, first_bias, op, "x", "first_bias");
  check_same(x, biases, op, "x", "biases");
  TORCH_CHECK(first_bias.dim() == 1 && first_bias.size(0) == g.channels, op, ": first_bias must be [",
              g.channels, "], got ", first_bias.sizes());
  TORCH_CHECK(biases.dim() == 2 && biases.size(0) == g.depth && biases.size(1) == g.channels, op,
              ": biases must be [", g.depth, ", ", g.channels, "], got ", biases.sizes());
  return g;
}

inline Geometry check_backward(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& first_weight,
                               const at::Tensor& weights, const at::Tensor& masks, int64_t window, int64_t stride) {
  const char* op = "scnn_features_backward";
  const Geometry g = check_and_describe(x, first_weight, weights, window, stride, op);
  check_same(x, grad, op, "x", "grad");
  TORCH_CHECK(grad.dim() == 4 && grad.size(0) == g.batch && grad.size(1) == g.channels &&
                  grad.size(2) == g.pooled_h && grad.size(3) == g.pooled_w,
              op, ": grad must be [", g.batch, ", ", g.channels, ", ", g.pooled_h, ", ", g.pooled_w, "], got ",
              grad.sizes());
  TORCH_CHECK(masks.scalar_type() == at::kInt && masks.device() == x.device(), op,
              ": masks must be int32 on ", x.device());
  TORCH_CHECK(masks.dim() == 4 && masks.size(0) == g.batch && masks.size(1) == g.depth + 1 &&
                  masks.size(2) == g.covered_pixels() && masks.size(3) == g.words(),
              op, ": masks must be [", g.batch, ", ", g.depth + 1, ", ", g.covered_pixels(), ", ", g.words(),
              "] (saved by scnn_features with save_masks=True), got ", masks.sizes());
  return g;
}

// Pixels per tile: equal tiles (no tiny remainder tile, whose fixed costs are wasted) of at most
// `max_elements` activations per [t, C] buffer, and at least `min_tiles` of them unless a tile
// would drop below `min_elements` (bigger GEMMs run faster; several tiles keep a small image's
// peak memory a small fraction of the composition's).
struct TileSize {
  int64_t min_elements;
  int64_t max_elements;
  int64_t min_tiles;
};

inline int64_t tile_pixels(const Geometry& g, TileSize size) {
  const int64_t c = std::max<int64_t>(1, g.channels), pixels = std::max<int64_t>(1, g.covered_pixels());
  const int64_t lo = std::max<int64_t>(1, size.min_elements / c), hi = std::max<int64_t>(lo, size.max_elements / c);
  const int64_t tiles = std::max((pixels + hi - 1) / hi, std::min(size.min_tiles, (pixels + lo - 1) / lo));
  return (pixels + tiles - 1) / tiles;
}

template <class Kernels>
std::tuple<at::Tensor, at::Tensor> forward(const at::Tensor& x_in, const at::Tensor& first_weight,
                                           const at::Tensor& first_bias, const at::Tensor& weights_in,
                                           const at::Tensor& biases, int64_t window, int64_t stride,
                                           bool patch_norm, bool save_masks, TileSize tile_size) {
  const Geometry g = check_forward(x_in, first_weight, first_bias, weights_in, biases, window, stride);

  const auto x = x_in.contiguous();
  const auto weights = weights_in.contiguous();
  const auto w0 = first_weight.contiguous().view({g.channels, g.column_length()});
  const auto options = x.options();
  auto acc = at::zeros({g.batch, g.pooled_h, g.pooled_w, g.channels}, options.dtype(at::kDouble));
  auto masks = save_masks ? at::empty({g.batch, g.depth + 1, g.covered_pixels(), g.words()}, options.dtype(at::kInt))
                          : at::empty({0}, options.dtype(at::kInt));
  if (g.batch > 0 && g.channels > 0) {
    const int64_t tile = tile_pixels(g, tile_size);
    auto cols = at::empty({tile, g.column_length()}, options);
    auto act = at::empty({tile, g.channels}, options);
    auto next = at::empty({tile, g.channels}, options);
    for (int64_t n = 0; n < g.batch; ++n) {
      const auto image = x.select(0, n);
      auto acc_n = acc.select(0, n);
      for (int64_t p0 = 0; p0 < g.covered_pixels(); p0 += tile) {
        const int64_t t = std::min(tile, g.covered_pixels() - p0);
        auto mask_of = [&](int64_t layer) {
          return save_masks ? masks.select(0, n).select(0, layer).narrow(0, p0, t) : at::Tensor();
        };
        auto c = cols.narrow(0, 0, t);
        auto a = act.narrow(0, 0, t);
        auto b = next.narrow(0, 0, t);
        Kernels::im2col(image, c, g, p0, patch_norm);
        at::addmm_out(a, first_bias, c, w0.t());
        Kernels::relu_pack(a, mask_of(0));
        for (int64_t l = 0; l < g.depth; ++l) {
          at::addmm_out(b, biases.select(0, l), a, weights.select(0, l).t());
          Kernels::relu_pack(b, mask_of(l + 1));
          std::swap(a, b);
        }
        Kernels::pool_accumulate(a, acc_n, g, p0);
      }
    }
  }
  const double inv_area = 1.0 / static_cast<double>(window * window);
  auto out = acc.mul_(inv_area).permute({0, 3, 1, 2}).to(x.scalar_type()).contiguous();
  return {out, masks};
}

template <class Kernels>
at::Tensor backward(const at::Tensor& grad, const at::Tensor& x_in, const at::Tensor& first_weight,
                    const at::Tensor& weights_in, const at::Tensor& masks, int64_t window, int64_t stride,
                    bool patch_norm, TileSize tile_size) {
  const Geometry g = check_backward(grad, x_in, first_weight, weights_in, masks, window, stride);

  const auto x = x_in.contiguous();
  const auto weights = weights_in.contiguous();
  const auto mask = masks.contiguous();
  const auto w0 = first_weight.contiguous().view({g.channels, g.column_length()});
  auto dx = at::zeros_like(x);
  if (g.batch == 0 || g.channels == 0) return dx;
  // Pixel-major window gradients, the 1/W^2 of the average folded in once.
  const auto pooled_grad =
      (grad.permute({0, 2, 3, 1}) * (1.0 / static_cast<double>(window * window))).to(x.scalar_type()).contiguous();
  const int64_t tile = tile_pixels(g, tile_size);
  const auto options = x.options();
  auto dcols = at::empty({tile, g.column_length()}, options);
  auto dact = at::empty({tile, g.channels}, options);
  auto dnext = at::empty({tile, g.channels}, options);
  for (int64_t n = 0; n < g.batch; ++n) {
    const auto image = x.select(0, n);
    const auto g_n = pooled_grad.select(0, n);
    auto dx_n = dx.select(0, n);
    for (int64_t p0 = 0; p0 < g.covered_pixels(); p0 += tile) {
      const int64_t t = std::min(tile, g.covered_pixels() - p0);
      auto mask_of = [&](int64_t layer) { return mask.select(0, n).select(0, layer).narrow(0, p0, t); };
      auto a = dact.narrow(0, 0, t);
      auto b = dnext.narrow(0, 0, t);
      auto c = dcols.narrow(0, 0, t);
      Kernels::pool_grad(g_n, a, g, p0);
      for (int64_t l = g.depth; l >= 1; --l) {
        Kernels::apply_mask(a, mask_of(l));
        at::mm_out(b, a, weights.select(0, l - 1));
        std::swap(a, b);
      }
      Kernels::apply_mask(a, mask_of(0));
      at::mm_out(c, a, w0);
      if (patch_norm) Kernels::patch_norm_backward(image, c, g, p0);
      Kernels::col2im_accumulate(c, dx_n, g, p0);
    }
  }
  return dx;
}

}  // namespace scnn
}  // namespace perceptual_ext
