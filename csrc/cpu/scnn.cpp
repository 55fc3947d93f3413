// Fused S-CNN, CPU: pixel tiles through every layer (BLAS GEMMs on [t, C] tiles), window sums
// accumulated in float64, ReLU masks packed to bits for a backward that needs no activations.
// One parallel loop over tiles (below); argument preparation and the work of one tile from
// host/scnn_driver.h, the elementwise passes call common/scnn.h.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "common/scnn.h"
#include "host/scnn_driver.h"
#include "host/registration.h"

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
int64_t grain(int64_t work_per_item) {
  return std::max<int64_t>(1, kMinTaskWork / std::max<int64_t>(1, work_per_item));
}

struct CpuKernels {
  static void im2col(const at::Tensor& image, at::Tensor& cols, const scnn::Geometry& g, int64_t p0, bool patch_norm) {
    AT_DISPATCH_FLOATING_TYPES(cols.scalar_type(), "scnn_im2col_cpu", [&] {
      const scalar_t* src = image.data_ptr<scalar_t>();
      scalar_t* dst = cols.data_ptr<scalar_t>();
      const int64_t length = g.column_length();
      at::parallel_for(0, cols.size(0), grain(length), [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          const int64_t p = p0 + i;
          scalar_t* column = dst + i * length;
          scnn::gather_patch(src, g.in_channels, g.height, g.width, p / g.covered_w, p % g.covered_w, g.patch, column);
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
    const auto rows = scnn::window_rows(g, p0, t);
    const int64_t i_first = rows.first, i_last = rows.last;
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

  // Input pixels the tile's patches read (scnn::input_region).
  static void col2im_accumulate(const at::Tensor& dcols, at::Tensor& dimage, const scnn::Geometry& g, int64_t p0) {
    const int64_t t = dcols.size(0);
    const auto region = scnn::input_region(g, p0, t);
    const int64_t y_begin = region.y_begin, x_end = region.x_end, rows = region.rows();
    AT_DISPATCH_FLOATING_TYPES(dcols.scalar_type(), "scnn_col2im_cpu", [&] {
      const scalar_t* d = dcols.data_ptr<scalar_t>();
      scalar_t* dst = dimage.data_ptr<scalar_t>();
      at::parallel_for(0, g.in_channels * rows, grain(x_end * g.patch * g.patch), [&](int64_t begin, int64_t end) {
        for (int64_t k = begin; k < end; ++k) {
          const int64_t c = k / rows, yy = y_begin + k % rows;
          scalar_t* row = dst + (c * g.height + yy) * g.width;
          for (int64_t xx = 0; xx < x_end; ++xx)
            row[xx] += static_cast<scalar_t>(
                scnn::patch_grad_at(d, c, yy, xx, g.patch, g.covered_h, g.covered_w, p0, p0 + t, g.in_channels));
        }
      });
    });
  }
};

void check_dtype_cpu(const at::Tensor& x, const char* op) {
  check_dtype(x, {at::kFloat, at::kDouble}, op, "x");
}

// Pixels per tile: ~kTileElements activations, and a tile count per image that is a multiple of the
// thread count, so the threads get equal work.
int64_t cpu_tile_pixels(const scnn::Geometry& g) {
  const int64_t pixels = std::max<int64_t>(1, g.covered_pixels());
  // Sized by the wider of the [t, C] activations and the [t, C_in P^2] columns.
  const int64_t target = std::max<int64_t>(1, kTileElements / std::max<int64_t>({1, g.channels, g.column_length()}));
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  int64_t tiles = (pixels + target - 1) / target;
  tiles = std::min(pixels, (tiles + threads - 1) / threads * threads);
  return (pixels + tiles - 1) / tiles;
}

// One at::parallel_for over all (image n, tile [p0, p0 + t)) pairs: each thread walks whole tiles
// through every layer with buffers of its own; nested at::parallel_for (the elementwise passes) and
// MKL run single-threaded inside it. Accumulations that tiles share (window sums, d x) go to one
// copy per thread, summed at the end; thread 0 writes into the result itself.
// body(buffers, n, p0, t, out) with `out` that thread's copy of `result`.
template <class Body>
void for_each_tile(const scnn::Geometry& g, int64_t tile, const at::TensorOptions& options, at::Tensor& result,
                   const Body& body) {
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
    scnn::TileBuffers buffers(g, tile, options);
    for (int64_t k = begin; k < end; ++k) {
      const int64_t n = k / tiles, p0 = (k % tiles) * tile;
      body(buffers, n, p0, std::min(tile, g.covered_pixels() - p0), out);
    }
  });
  for (size_t i = 1; i < partial.size(); ++i)
    if (partial[i].defined()) result.add_(partial[i]);
}

std::tuple<at::Tensor, at::Tensor> scnn_features_cpu(const at::Tensor& x, const at::Tensor& first_weight,
                                                     const at::Tensor& first_bias, const at::Tensor& weights,
                                                     const at::Tensor& biases, int64_t window, int64_t stride,
                                                     bool patch_norm, bool save_masks) {
  check_dtype_cpu(x, "scnn_features");
  scnn::ForwardCall call =
      scnn::prepare_forward(x, first_weight, first_bias, weights, biases, window, stride, save_masks);
  if (call.has_work())
    for_each_tile(call.g, cpu_tile_pixels(call.g), call.x.options(), call.acc,
                  [&](scnn::TileBuffers& buffers, int64_t n, int64_t p0, int64_t t, at::Tensor& sums) {
                    scnn::forward_tile<CpuKernels>(call, buffers, sums.select(0, n), n, p0, t, patch_norm);
                  });
  return scnn::finish_forward(call);
}

at::Tensor scnn_features_backward_cpu(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& first_weight,
                                      const at::Tensor& weights, const at::Tensor& masks, int64_t window,
                                      int64_t stride, bool patch_norm) {
  check_dtype_cpu(x, "scnn_features_backward");
  scnn::BackwardCall call = scnn::prepare_backward(grad, x, first_weight, weights, masks, window, stride);
  if (call.has_work())
    for_each_tile(call.g, cpu_tile_pixels(call.g), call.x.options(), call.dx,
                  [&](scnn::TileBuffers& buffers, int64_t n, int64_t p0, int64_t t, at::Tensor& dx_part) {
                    scnn::backward_tile<CpuKernels>(call, buffers, dx_part.select(0, n), n, p0, t, patch_norm);
                  });
  return call.dx;
}

}  // namespace

TORCH_LIBRARY_IMPL(perceptual_ext, CPU, m) {
  impl_with_backward(m, "scnn_features", &scnn_features_cpu, &scnn_features_backward_cpu);
}

}  // namespace perceptual_ext
