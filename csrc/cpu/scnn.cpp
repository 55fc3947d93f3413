// Fused S-CNN, CPU: pixel tiles through every layer (BLAS GEMMs on [t, C] tiles), window sums
// accumulated in float64, ReLU masks packed to bits for a backward that needs no activations.
// One parallel loop over tiles (below); argument checks from common/scnn_driver.h, the elementwise
// passes call common/scnn.h.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "common/scnn.h"
#include "common/scnn_driver.h"

namespace perceptual_ext {
namespace {

// About 384K activations (1.5 MiB in float32) per [t, C] buffer: ~384-pixel tiles at C = 1024. Each
// thread runs whole tiles with single-threaded BLAS (M = t, K = N = C: near full speed), so a tile's
// layers cost no thread-pool wake-ups, and every thread's two buffers together stay a small
// fraction of the composition's peak at 64x64.
constexpr int64_t kTileElements = 384 * 1024;
// Elementwise passes go parallel only above ~32K element operations per task: waking the thread
// pool costs more than a small pass (and far more on a loaded machine).
constexpr int64_t kMinTaskWork = 32 * 1024;
int64_t grain(int64_t work_per_item) { return std::max<int64_t>(1, kMinTaskWork / std::max<int64_t>(1, work_per_item)); }

struct CpuKernels {
  static void im2col(const at::Tensor& image, at::Tensor& cols, const scnn::Geometry& g, int64_t p0,
                     bool patch_norm) {
    AT_DISPATCH_FLOATING_TYPES(cols.scalar_type(), "scnn_im2col_cpu", [&] {
      const scalar_t* src = image.data_ptr<scalar_t>();
      scalar_t* dst = cols.data_ptr<scalar_t>();
      const int64_t length = g.column_length();
      at::parallel_for(0, cols.size(0), grain(length), [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          const int64_t p = p0 + i;
          scalar_t* column = dst + i * length;
          scnn::gather_patch(src, g.in_channels, g.height, g.width, p / g.covered_w, p % g.covered_w, g.patch,
                             column);
          if (patch_norm) scnn::patch_normalize(column, length);
        }
      });
    });
  }

  static void relu_pack(at::Tensor& act, const at::Tensor& mask) {
    AT_DISPATCH_FLOATING_TYPES(act.scalar_type(), "scnn_relu_cpu", [&] {
      scalar_t* a = act.data_ptr<scalar_t>();
      const int64_t channels = act.size(1);
      if (!mask.defined()) {  // no backward: a plain vectorized ReLU
        act.clamp_min_(0);
        return;
      }
      const int64_t words = scnn::mask_words(channels);
      uint32_t* bits = reinterpret_cast<uint32_t*>(mask.data_ptr<int32_t>());
      at::parallel_for(0, act.size(0), grain(channels), [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i)
          for (int64_t w = 0; w < words; ++w) {
            const int64_t c0 = w * scnn::kMaskBits;
            bits[i * words + w] = scnn::relu_and_pack(a + i * channels + c0, std::min(scnn::kMaskBits, channels - c0));
          }
      });
    });
  }

  static void apply_mask(at::Tensor& grad, const at::Tensor& mask) {
    AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "scnn_mask_cpu", [&] {
      scalar_t* d = grad.data_ptr<scalar_t>();
      const int64_t channels = grad.size(1), words = scnn::mask_words(channels);
      const uint32_t* bits = reinterpret_cast<const uint32_t*>(mask.data_ptr<int32_t>());
      at::parallel_for(0, grad.size(0), grain(channels), [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i)
          for (int64_t w = 0; w < words; ++w) {
            const int64_t c0 = w * scnn::kMaskBits;
            scnn::apply_mask(d + i * channels + c0, std::min(scnn::kMaskBits, channels - c0), bits[i * words + w]);
          }
      });
    });
  }

  // One task per window touched by the tile: it adds the tile's pixels of that window, channels
  // innermost (contiguous, vectorized). No two tasks write the same window.
  static void pool_accumulate(const at::Tensor& act, at::Tensor& acc, const scnn::Geometry& g, int64_t p0) {
    const int64_t t = act.size(0), channels = g.channels;
    const int64_t y_first = p0 / g.covered_w, y_last = (p0 + t - 1) / g.covered_w;
    const int64_t i_first = scnn::first_window(y_first, g.window, g.stride);
    const int64_t i_last = scnn::last_window(y_last, g.stride, g.pooled_h);
    if (i_first > i_last) return;
    AT_DISPATCH_FLOATING_TYPES(act.scalar_type(), "scnn_pool_cpu", [&] {
      const scalar_t* a = act.data_ptr<scalar_t>();
      double* out = acc.data_ptr<double>();
      const int64_t windows = (i_last - i_first + 1) * g.pooled_w;
      at::parallel_for(0, windows, grain(g.window * g.window * channels / g.stride), [&](int64_t begin, int64_t end) {
        for (int64_t k = begin; k < end; ++k) {
          const int64_t i = i_first + k / g.pooled_w, j = k % g.pooled_w;
          double* o = out + (i * g.pooled_w + j) * channels;
          const int64_t y_end = std::min(i * g.stride + g.window, y_last + 1);
          for (int64_t y = std::max(i * g.stride, y_first); y < y_end; ++y) {
            const auto span = scnn::tile_span_in_row(y, g.covered_w, j * g.stride, g.window, p0, p0 + t);
            for (int64_t x = span.begin; x < span.end; ++x) {
              const scalar_t* row = a + (y * g.covered_w + x - p0) * channels;
              for (int64_t c = 0; c < channels; ++c) o[c] += static_cast<double>(row[c]);
            }
          }
        }
      });
    });
  }

  static void pool_grad(const at::Tensor& pooled_grad, at::Tensor& grad, const scnn::Geometry& g, int64_t p0) {
    AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "scnn_pool_grad_cpu", [&] {
      const scalar_t* src = pooled_grad.data_ptr<scalar_t>();
      scalar_t* d = grad.data_ptr<scalar_t>();
      const int64_t channels = g.channels;
      at::parallel_for(0, grad.size(0), grain(4 * channels), [&](int64_t begin, int64_t end) {
        for (int64_t k = begin; k < end; ++k) {
          const int64_t p = p0 + k, y = p / g.covered_w, x = p % g.covered_w;
          scalar_t* out = d + k * channels;
          std::fill(out, out + channels, scalar_t(0));
          const int64_t j_first = scnn::first_window(x, g.window, g.stride);
          const int64_t j_last = scnn::last_window(x, g.stride, g.pooled_w);
          for (int64_t i = scnn::first_window(y, g.window, g.stride); i <= scnn::last_window(y, g.stride, g.pooled_h);
               ++i)
            for (int64_t j = j_first; j <= j_last; ++j) {
              const scalar_t* w = src + (i * g.pooled_w + j) * channels;
              for (int64_t c = 0; c < channels; ++c) out[c] += w[c];
            }
        }
      });
    });
  }

  static void patch_norm_backward(const at::Tensor& image, at::Tensor& dcols, const scnn::Geometry& g, int64_t p0) {
    AT_DISPATCH_FLOATING_TYPES(dcols.scalar_type(), "scnn_patch_norm_backward_cpu", [&] {
      const scalar_t* src = image.data_ptr<scalar_t>();
      scalar_t* d = dcols.data_ptr<scalar_t>();
      const int64_t length = g.column_length();
      at::parallel_for(0, dcols.size(0), grain(4 * length), [&](int64_t begin, int64_t end) {
        std::vector<scalar_t> raw(length);
        for (int64_t i = begin; i < end; ++i) {
          const int64_t p = p0 + i;
          scnn::gather_patch(src, g.in_channels, g.height, g.width, p / g.covered_w, p % g.covered_w, g.patch,
                             raw.data());
          scnn::patch_normalize_backward(raw.data(), d + i * length, length);
        }
      });
    });
  }

  // Input pixels the tile's patches read: rows within P/2 of the tile's rows.
  static void col2im_accumulate(const at::Tensor& dcols, at::Tensor& dimage, const scnn::Geometry& g, int64_t p0) {
    const int64_t t = dcols.size(0), r = g.patch / 2;
    const int64_t y_begin = std::max<int64_t>(0, p0 / g.covered_w - r);
    const int64_t y_end = std::min(g.height, (p0 + t - 1) / g.covered_w + r + 1);
    const int64_t x_end = std::min(g.width, g.covered_w + r);
    const int64_t rows = y_end - y_begin;
    AT_DISPATCH_FLOATING_TYPES(dcols.scalar_type(), "scnn_col2im_cpu", [&] {
      const scalar_t* d = dcols.data_ptr<scalar_t>();
      scalar_t* dst = dimage.data_ptr<scalar_t>();
      at::parallel_for(0, g.in_channels * rows, grain(x_end * g.patch * g.patch), [&](int64_t begin, int64_t end) {
        for (int64_t k = begin; k < end; ++k) {
          const int64_t c = k / rows, yy = y_begin + k % rows;
          scalar_t* row = dst + (c * g.height + yy) * g.width;
          for (int64_t xx = 0; xx < x_end; ++xx)
            row[xx] += static_cast<scalar_t>(scnn::patch_grad_at(d, c, yy, xx, g.patch, g.covered_h, g.covered_w, p0,
                                                                 p0 + t, g.in_channels));
        }
      });
    });
  }
};

void check_dtype_cpu(const at::Tensor& x, const char* op) { check_dtype(x, {at::kFloat, at::kDouble}, op, "x"); }

// Pixels per tile: ~kTileElements activations, and a tile count per image that is a multiple of the
// thread count, so the threads get equal work.
int64_t cpu_tile_pixels(const scnn::Geometry& g) {
  const int64_t pixels = std::max<int64_t>(1, g.covered_pixels());
  const int64_t target = std::max<int64_t>(1, kTileElements / std::max<int64_t>(1, g.channels));
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  int64_t tiles = (pixels + target - 1) / target;
  tiles = std::min(pixels, (tiles + threads - 1) / threads * threads);
  return (pixels + tiles - 1) / tiles;
}

// One at::parallel_for over all (image, tile) pairs: each thread walks whole tiles through every
// layer with buffers of its own; nested at::parallel_for (the elementwise passes) and MKL run
// single-threaded inside it. Accumulations that tiles share (window sums, d x) go to one copy per
// thread, summed at the end; thread 0 writes into the result itself.
template <class Body>
void for_each_tile(const scnn::Geometry& g, int64_t tile, at::Tensor& result, const Body& body) {
  const int64_t tiles = (g.covered_pixels() + tile - 1) / tile;
  std::vector<at::Tensor> partial(std::max<int64_t>(1, at::get_num_threads()));
  // The caller's thread-local state (autograd keys excluded below the op, grad mode) on every thread.
  const at::ThreadLocalState state;
  at::parallel_for(0, g.batch * tiles, 1, [&](int64_t begin, int64_t end) {
    at::ThreadLocalStateGuard state_guard(state);
    const int64_t slot = at::get_thread_num();
    TORCH_INTERNAL_ASSERT(slot >= 0 && slot < static_cast<int64_t>(partial.size()));
    if (slot > 0 && !partial[slot].defined()) partial[slot] = at::zeros_like(result);
    at::Tensor& out = slot == 0 ? result : partial[slot];
    body(begin, end, tiles, out);
  });
  for (size_t i = 1; i < partial.size(); ++i)
    if (partial[i].defined()) result.add_(partial[i]);
}

std::tuple<at::Tensor, at::Tensor> scnn_features_cpu(const at::Tensor& x_in, const at::Tensor& first_weight,
                                                     const at::Tensor& first_bias, const at::Tensor& weights_in,
                                                     const at::Tensor& biases, int64_t window, int64_t stride,
                                                     bool patch_norm, bool save_masks) {
  check_dtype_cpu(x_in, "scnn_features");
  const scnn::Geometry g = scnn::check_forward(x_in, first_weight, first_bias, weights_in, biases, window, stride);
  const auto x = x_in.contiguous();
  const auto weights = weights_in.contiguous();
  const auto w0 = first_weight.contiguous().view({g.channels, g.column_length()});
  const auto options = x.options();
  auto acc = at::zeros({g.batch, g.pooled_h, g.pooled_w, g.channels}, options.dtype(at::kDouble));
  auto masks = save_masks ? at::empty({g.batch, g.depth + 1, g.covered_pixels(), g.words()}, options.dtype(at::kInt))
                          : at::empty({0}, options.dtype(at::kInt));
  if (g.batch > 0 && g.channels > 0) {
    const int64_t tile = cpu_tile_pixels(g);
    for_each_tile(g, tile, acc, [&](int64_t begin, int64_t end, int64_t tiles, at::Tensor& sums) {
      auto cols = at::empty({tile, g.column_length()}, options);
      auto act = at::empty({tile, g.channels}, options);
      auto next = at::empty({tile, g.channels}, options);
      for (int64_t k = begin; k < end; ++k) {
        const int64_t n = k / tiles, p0 = (k % tiles) * tile;
        const int64_t t = std::min(tile, g.covered_pixels() - p0);
        auto mask_of = [&](int64_t layer) {
          return save_masks ? masks.select(0, n).select(0, layer).narrow(0, p0, t) : at::Tensor();
        };
        auto c = cols.narrow(0, 0, t);
        auto a = act.narrow(0, 0, t);
        auto b = next.narrow(0, 0, t);
        CpuKernels::im2col(x.select(0, n), c, g, p0, patch_norm);
        at::addmm_out(a, first_bias, c, w0.t());
        CpuKernels::relu_pack(a, mask_of(0));
        for (int64_t l = 0; l < g.depth; ++l) {
          at::addmm_out(b, biases.select(0, l), a, weights.select(0, l).t());
          CpuKernels::relu_pack(b, mask_of(l + 1));
          std::swap(a, b);
        }
        auto sums_n = sums.select(0, n);
        CpuKernels::pool_accumulate(a, sums_n, g, p0);
      }
    });
  }
  const double inv_area = 1.0 / static_cast<double>(window * window);
  auto out = acc.mul_(inv_area).permute({0, 3, 1, 2}).to(x.scalar_type()).contiguous();
  return {out, masks};
}

at::Tensor scnn_features_backward_cpu(const at::Tensor& grad, const at::Tensor& x_in, const at::Tensor& first_weight,
                                      const at::Tensor& weights_in, const at::Tensor& masks_in, int64_t window,
                                      int64_t stride, bool patch_norm) {
  check_dtype_cpu(x_in, "scnn_features_backward");
  const scnn::Geometry g = scnn::check_backward(grad, x_in, first_weight, weights_in, masks_in, window, stride);
  const auto x = x_in.contiguous();
  const auto weights = weights_in.contiguous();
  const auto masks = masks_in.contiguous();
  const auto w0 = first_weight.contiguous().view({g.channels, g.column_length()});
  auto dx = at::zeros_like(x);
  if (g.batch == 0 || g.channels == 0) return dx;
  // Pixel-major window gradients, the 1/W^2 of the average folded in once.
  const auto pooled_grad =
      (grad.permute({0, 2, 3, 1}) * (1.0 / static_cast<double>(window * window))).to(x.scalar_type()).contiguous();
  const int64_t tile = cpu_tile_pixels(g);
  const auto options = x.options();
  for_each_tile(g, tile, dx, [&](int64_t begin, int64_t end, int64_t tiles, at::Tensor& dx_part) {
    auto dcols = at::empty({tile, g.column_length()}, options);
    auto dact = at::empty({tile, g.channels}, options);
    auto dnext = at::empty({tile, g.channels}, options);
    for (int64_t k = begin; k < end; ++k) {
      const int64_t n = k / tiles, p0 = (k % tiles) * tile;
      const int64_t t = std::min(tile, g.covered_pixels() - p0);
      auto mask_of = [&](int64_t layer) { return masks.select(0, n).select(0, layer).narrow(0, p0, t); };
      auto a = dact.narrow(0, 0, t);
      auto b = dnext.narrow(0, 0, t);
      auto c = dcols.narrow(0, 0, t);
      CpuKernels::pool_grad(pooled_grad.select(0, n), a, g, p0);
      for (int64_t l = g.depth; l >= 1; --l) {
        CpuKernels::apply_mask(a, mask_of(l));
        at::mm_out(b, a, weights.select(0, l - 1));
        std::swap(a, b);
      }
      CpuKernels::apply_mask(a, mask_of(0));
      at::mm_out(c, a, w0);
      const auto image = x.select(0, n);
      if (patch_norm) CpuKernels::patch_norm_backward(image, c, g, p0);
      auto dx_n = dx_part.select(0, n);
      CpuKernels::col2im_accumulate(c, dx_n, g, p0);
    }
  });
  return dx;
}

}  // namespace

TORCH_LIBRARY_IMPL(perceptual_ext, CPU, m) {
  m.impl("scnn_features", &scnn_features_cpu);
  m.impl("scnn_features_backward", &scnn_features_backward_cpu);
}

}  // namespace perceptual_ext
