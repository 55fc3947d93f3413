// Fused S-CNN, CPU: pixel tiles through every layer (BLAS GEMMs on [t, C] tiles), window sums
// accumulated in float64, ReLU masks packed to bits for a backward that needs no activations.
// The tile loop is common/scnn_driver.h; the elementwise passes below call common/scnn.h.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "common/scnn.h"
#include "common/scnn_driver.h"

namespace perceptual_ext {
namespace {

// 512K..2M activations (2..8 MiB in float32) per [t, C] buffer: 512..2048-pixel tiles at C = 1024,
// GEMMs large enough for BLAS to run near full speed; at least 5 tiles per image (a 64x64 image's
// peak memory is then < 1/10 of the composition's).
constexpr scnn::TileSize kTileSize{512 * 1024, 2 * 1024 * 1024, 5};
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

std::tuple<at::Tensor, at::Tensor> scnn_features_cpu(const at::Tensor& x, const at::Tensor& first_weight,
                                                     const at::Tensor& first_bias, const at::Tensor& weights,
                                                     const at::Tensor& biases, int64_t window, int64_t stride,
                                                     bool patch_norm, bool save_masks) {
  check_dtype_cpu(x, "scnn_features");
  return scnn::forward<CpuKernels>(x, first_weight, first_bias, weights, biases, window, stride, patch_norm,
                                   save_masks, kTileSize);
}

at::Tensor scnn_features_backward_cpu(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& first_weight,
                                      const at::Tensor& weights, const at::Tensor& masks, int64_t window,
                                      int64_t stride, bool patch_norm) {
  check_dtype_cpu(x, "scnn_features_backward");
  return scnn::backward<CpuKernels>(grad, x, first_weight, weights, masks, window, stride, patch_norm,
                                    kTileSize);
}

}  // namespace

TORCH_LIBRARY_IMPL(perceptual_ext, CPU, m) {
  m.impl("scnn_features", &scnn_features_cpu);
  m.impl("scnn_features_backward", &scnn_features_backward_cpu);
}

}  // namespace perceptual_ext
