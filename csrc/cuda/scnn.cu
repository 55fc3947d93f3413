// Fused S-CNN, CUDA: the in-order tile loop of host/scnn_driver.h with cuBLAS GEMMs on [t, C]
// tiles (torch's TF32 flag applies to float32; half/bfloat16 inputs run the GEMMs in that precision
// with fp32 accumulation: cuda/fp32_reductions.h). The elementwise passes are grid-stride kernels, one output element
// per thread, each calling the arithmetic of common/scnn.h; no atomics (every pass is a gather).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>

#include "host/checks.h"
#include "common/scnn.h"
#include "cuda/fp32_reductions.h"
#include "cuda/helpers.h"
#include "host/scnn_driver.h"
#include "host/registration.h"

namespace perceptual_ext {
namespace {

// Up to 16M values (64 MiB in float32) per [t, C] activation buffer and per [t, C_in P^2] column
// buffer (tiles are sized by the wider of the two): 16384-pixel tiles at C = 1024, GEMMs of
// 34 GFLOP that keep the GPU busy, while the buffers stay far below the composition's maps.
constexpr scnn::TileSize kTileSize{4 * 1024 * 1024, 16 * 1024 * 1024, 1};
using cuda::grid_size;

#define PE_DISPATCH(type, name, ...) AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, type, name, __VA_ARGS__)

template <typename T>
__global__ void im2col_kernel(const T* __restrict__ image, T* __restrict__ cols, scnn::Geometry g, int64_t p0,
                              int64_t count, bool patch_norm) {
  const int64_t length = g.column_length();
  PE_GRID_STRIDE_LOOP(i, count) {
    const int64_t p = p0 + i;
    T* column = cols + i * length;
    scnn::gather_patch(image, g.in_channels, g.height, g.width, p / g.covered_w, p % g.covered_w, g.patch, column);
    if (patch_norm) scnn::patch_normalize(column, length);
  }
}

template <typename T>
__global__ void relu_pack_kernel(T* __restrict__ act, uint32_t* __restrict__ bits, int64_t pixels, int64_t channels) {
  const int64_t words = scnn::mask_words(channels);
  PE_GRID_STRIDE_LOOP(k, pixels * words) {
    const int64_t i = k / words, c0 = (k % words) * scnn::kMaskBits;
    const int64_t count = channels - c0 < scnn::kMaskBits ? channels - c0 : scnn::kMaskBits;
    bits[k] = scnn::relu_and_pack(act + i * channels + c0, count);
  }
}

template <typename T>
__global__ void apply_mask_kernel(T* __restrict__ grad, const uint32_t* __restrict__ bits, int64_t pixels,
                                  int64_t channels) {
  const int64_t words = scnn::mask_words(channels);
  PE_GRID_STRIDE_LOOP(k, pixels * words) {
    const int64_t i = k / words, c0 = (k % words) * scnn::kMaskBits;
    const int64_t count = channels - c0 < scnn::kMaskBits ? channels - c0 : scnn::kMaskBits;
    scnn::apply_mask(grad + i * channels + c0, count, bits[k]);
  }
}

// One thread per (window touched by the tile, channel); channels fastest, so reads coalesce.
template <typename T>
__global__ void pool_accumulate_kernel(const T* __restrict__ act, double* __restrict__ acc, scnn::Geometry g,
                                       int64_t p0, int64_t count, int64_t i_first, int64_t windows) {
  const int64_t y_first = p0 / g.covered_w, y_last = (p0 + count - 1) / g.covered_w;
  PE_GRID_STRIDE_LOOP(k, windows * g.channels) {
    const int64_t c = k % g.channels, w = k / g.channels;
    const int64_t i = i_first + w / g.pooled_w, j = w % g.pooled_w;
    const int64_t y_end = i * g.stride + g.window < y_last + 1 ? i * g.stride + g.window : y_last + 1;
    double sum = 0;
    for (int64_t y = i * g.stride > y_first ? i * g.stride : y_first; y < y_end; ++y) {
      const auto span = scnn::tile_span_in_row(y, g.covered_w, j * g.stride, g.window, p0, p0 + count);
      for (int64_t x = span.begin; x < span.end; ++x)
        sum += static_cast<double>(act[(y * g.covered_w + x - p0) * g.channels + c]);
    }
    acc[(i * g.pooled_w + j) * g.channels + c] += sum;
  }
}

template <typename T>
__global__ void pool_grad_kernel(const T* __restrict__ pooled_grad, T* __restrict__ grad, scnn::Geometry g, int64_t p0,
                                 int64_t count) {
  PE_GRID_STRIDE_LOOP(k, count * g.channels) {
    const int64_t c = k % g.channels, p = p0 + k / g.channels;
    const int64_t y = p / g.covered_w, x = p % g.covered_w;
    double sum = 0;
    for (int64_t i = scnn::first_window(y, g.window, g.stride); i <= scnn::last_window(y, g.stride, g.pooled_h); ++i)
      for (int64_t j = scnn::first_window(x, g.window, g.stride); j <= scnn::last_window(x, g.stride, g.pooled_w); ++j)
        sum += static_cast<double>(pooled_grad[(i * g.pooled_w + j) * g.channels + c]);
    grad[k] = static_cast<T>(sum);
  }
}

template <typename T>
__global__ void patch_norm_backward_kernel(const T* __restrict__ image, T* __restrict__ raw, T* __restrict__ dcols,
                                           scnn::Geometry g, int64_t p0, int64_t count) {
  const int64_t length = g.column_length();
  PE_GRID_STRIDE_LOOP(i, count) {
    const int64_t p = p0 + i;
    scnn::gather_patch(image, g.in_channels, g.height, g.width, p / g.covered_w, p % g.covered_w, g.patch,
                       raw + i * length);
    scnn::patch_normalize_backward(raw + i * length, dcols + i * length, length);
  }
}

template <typename T>
__global__ void col2im_kernel(const T* __restrict__ dcols, T* __restrict__ dimage, scnn::Geometry g, int64_t p0,
                              int64_t count, int64_t y_begin, int64_t rows, int64_t x_end) {
  PE_GRID_STRIDE_LOOP(k, g.in_channels * rows * x_end) {
    const int64_t xx = k % x_end, yy = y_begin + (k / x_end) % rows, c = k / (x_end * rows);
    T* pixel = dimage + (c * g.height + yy) * g.width + xx;
    *pixel =
        static_cast<T>(static_cast<double>(*pixel) + scnn::patch_grad_at(dcols, c, yy, xx, g.patch, g.covered_h,
                                                                         g.covered_w, p0, p0 + count, g.in_channels));
  }
}

struct CudaKernels {
  static void im2col(const at::Tensor& image, at::Tensor& cols, const scnn::Geometry& g, int64_t p0, bool patch_norm) {
    const int64_t count = cols.size(0);
    PE_DISPATCH(cols.scalar_type(), "scnn_im2col_cuda", [&] {
      cuda::launch(im2col_kernel<scalar_t>, grid_size(count), image.data_ptr<scalar_t>(), cols.data_ptr<scalar_t>(), g,
                   p0, count, patch_norm);
    });
  }

  static void relu_pack(at::Tensor& act, const at::Tensor& mask) {
    if (!mask.defined()) {
      act.clamp_min_(0);
      return;
    }
    const int64_t pixels = act.size(0), channels = act.size(1);
    PE_DISPATCH(act.scalar_type(), "scnn_relu_cuda", [&] {
      cuda::launch(relu_pack_kernel<scalar_t>, grid_size(pixels * scnn::mask_words(channels)), act.data_ptr<scalar_t>(),
                   reinterpret_cast<uint32_t*>(mask.data_ptr<int32_t>()), pixels, channels);
    });
  }

  static void apply_mask(at::Tensor& grad, const at::Tensor& mask) {
    const int64_t pixels = grad.size(0), channels = grad.size(1);
    PE_DISPATCH(grad.scalar_type(), "scnn_mask_cuda", [&] {
      cuda::launch(apply_mask_kernel<scalar_t>, grid_size(pixels * scnn::mask_words(channels)),
                   grad.data_ptr<scalar_t>(), reinterpret_cast<const uint32_t*>(mask.data_ptr<int32_t>()), pixels,
                   channels);
    });
  }

  static void pool_accumulate(const at::Tensor& act, at::Tensor& acc, const scnn::Geometry& g, int64_t p0) {
    const int64_t count = act.size(0);
    const auto rows = scnn::window_rows(g, p0, count);
    if (rows.first > rows.last) return;
    const int64_t i_first = rows.first, windows = (rows.last - rows.first + 1) * g.pooled_w;
    PE_DISPATCH(act.scalar_type(), "scnn_pool_cuda", [&] {
      cuda::launch(pool_accumulate_kernel<scalar_t>, grid_size(windows * g.channels), act.data_ptr<scalar_t>(),
                   acc.data_ptr<double>(), g, p0, count, i_first, windows);
    });
  }

  static void pool_grad(const at::Tensor& pooled_grad, at::Tensor& grad, const scnn::Geometry& g, int64_t p0) {
    const int64_t count = grad.size(0);
    PE_DISPATCH(grad.scalar_type(), "scnn_pool_grad_cuda", [&] {
      cuda::launch(pool_grad_kernel<scalar_t>, grid_size(count * g.channels), pooled_grad.data_ptr<scalar_t>(),
                   grad.data_ptr<scalar_t>(), g, p0, count);
    });
  }

  static void patch_norm_backward(const at::Tensor& image, at::Tensor& dcols, const scnn::Geometry& g, int64_t p0) {
    const int64_t count = dcols.size(0);
    auto raw = at::empty_like(dcols);  // the raw patches, recomputed from the image
    PE_DISPATCH(dcols.scalar_type(), "scnn_patch_norm_backward_cuda", [&] {
      cuda::launch(patch_norm_backward_kernel<scalar_t>, grid_size(count), image.data_ptr<scalar_t>(),
                   raw.data_ptr<scalar_t>(), dcols.data_ptr<scalar_t>(), g, p0, count);
    });
  }

  static void col2im_accumulate(const at::Tensor& dcols, at::Tensor& dimage, const scnn::Geometry& g, int64_t p0) {
    const int64_t count = dcols.size(0);
    const auto region = scnn::input_region(g, p0, count);
    const int64_t y_begin = region.y_begin, rows = region.rows(), x_end = region.x_end;
    PE_DISPATCH(dcols.scalar_type(), "scnn_col2im_cuda", [&] {
      cuda::launch(col2im_kernel<scalar_t>, grid_size(g.in_channels * rows * x_end), dcols.data_ptr<scalar_t>(),
                   dimage.data_ptr<scalar_t>(), g, p0, count, y_begin, rows, x_end);
    });
  }
};

void check_dtype_cuda(const at::Tensor& x, const char* op) {
  check_dtype(x, {at::kFloat, at::kDouble, at::kHalf, at::kBFloat16}, op, "x");
}

std::tuple<at::Tensor, at::Tensor> scnn_features_cuda(const at::Tensor& x, const at::Tensor& first_weight,
                                                      const at::Tensor& first_bias, const at::Tensor& weights,
                                                      const at::Tensor& biases, int64_t window, int64_t stride,
                                                      bool patch_norm, bool save_masks) {
  check_dtype_cuda(x, "scnn_features");
  const c10::cuda::CUDAGuard guard(x.device());
  const cuda::Fp32Reductions fp32(x);
  return scnn::forward<CudaKernels>(x, first_weight, first_bias, weights, biases, window, stride, patch_norm,
                                    save_masks, kTileSize);
}

at::Tensor scnn_features_backward_cuda(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& first_weight,
                                       const at::Tensor& weights, const at::Tensor& masks, int64_t window,
                                       int64_t stride, bool patch_norm) {
  check_dtype_cuda(x, "scnn_features_backward");
  const c10::cuda::CUDAGuard guard(x.device());
  const cuda::Fp32Reductions fp32(x);
  return scnn::backward<CudaKernels>(grad, x, first_weight, weights, masks, window, stride, patch_norm, kTileSize);
}

}  // namespace

TORCH_LIBRARY_IMPL(perceptual_ext, CUDA, m) {
  impl_with_backward(m, "scnn_features", &scnn_features_cuda, &scnn_features_backward_cuda);
}

}  // namespace perceptual_ext
