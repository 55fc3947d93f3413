// Patch random Fourier features, CUDA. One block per segment x segment tile of one image
// (common/rff_patch.h: every pixel of a tile feeds the same pooling windows) and per chunk of
// 256 features: the tile's reflect-padded patches are staged in shared memory, each thread
// projects them on its feature (weights read as [K, F], coalesced), applies the accurate cos and
// keeps the tile sum in a register. A second kernel averages tile sums into windows. Backward
// recomputes the projections per tile, writes per-pixel patch gradients, then gathers them into
// the input through the reflection (no atomics anywhere).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>

#include "common/rff_patch.h"
#include "host/rff_patch_plan.h"

namespace perceptual_ext {
namespace {

using rff_patch::Plan;
using rff_patch::WindowRange;

constexpr int kThreads = 256;
constexpr int64_t kSharedBytes = 40 * 1024;
constexpr int64_t kMaxBlocks = 65535;

// Geometry of the tiles, passed by value to the kernels.
struct Geometry {
  int64_t channels, height, width, patch, k_total, features;
  int64_t row_segments, col_segments;
  const int64_t* row_bounds;  // [row_segments + 1]
  const int64_t* col_bounds;  // [col_segments + 1]
  const int64_t* row_ranges;  // [row_segments, 2]
  const int64_t* col_ranges;  // [col_segments, 2]
};

struct TileCoords {
  int64_t n, row_segment, col_segment, row0, rows, col0, cols;
};

__device__ TileCoords tile_coords(const Geometry& g, int64_t tile) {
  const int64_t per_image = g.row_segments * g.col_segments;
  TileCoords t;
  t.n = tile / per_image;
  t.row_segment = (tile % per_image) / g.col_segments;
  t.col_segment = tile % g.col_segments;
  t.row0 = g.row_bounds[t.row_segment];
  t.rows = g.row_bounds[t.row_segment + 1] - t.row0;
  t.col0 = g.col_bounds[t.col_segment];
  t.cols = g.col_bounds[t.col_segment + 1] - t.col0;
  return t;
}

__device__ WindowRange range_of(const int64_t* ranges, int64_t segment) {
  return {ranges[2 * segment], ranges[2 * segment + 1]};
}

// Stage patches of tile pixels first..first+count-1 into shared memory [count, K].
template <typename scalar_t>
__device__ void stage_patches(const Geometry& g, const scalar_t* __restrict__ x, const TileCoords& t, int64_t first,
                              int64_t count, scalar_t* patches) {
  for (int64_t e = threadIdx.x; e < count * g.k_total; e += blockDim.x) {
    const int64_t pixel = first + e / g.k_total, k = e % g.k_total;
    const int64_t c = k / (g.patch * g.patch), dy = (k / g.patch) % g.patch, dx = k % g.patch;
    const int64_t i = t.row0 + pixel / t.cols, j = t.col0 + pixel % t.cols;
    patches[e] = x[((t.n * g.channels + c) * g.height + rff_patch::source(i, dy, g.patch, g.height)) * g.width +
                   rff_patch::source(j, dx, g.patch, g.width)];
  }
}

// sums[tile, f] = sum over the tile's pixels of cos(w_f . p + b_f). Grid: (tiles, feature chunks).
template <typename scalar_t>
__global__ void tile_sums_kernel(Geometry g, const scalar_t* __restrict__ x, const scalar_t* __restrict__ weight_t,
                                 const scalar_t* __restrict__ bias, scalar_t* __restrict__ sums, int64_t chunk,
                                 int64_t tiles) {
  extern __shared__ unsigned char shared_raw[];
  scalar_t* patches = reinterpret_cast<scalar_t*>(shared_raw);
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const TileCoords t = tile_coords(g, tile);
    const int64_t f = blockIdx.y * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    const bool pooled = !range_of(g.row_ranges, t.row_segment).empty() && !range_of(g.col_ranges, t.col_segment).empty();
    scalar_t acc = 0;
    const int64_t pixels = pooled ? t.rows * t.cols : 0;
    for (int64_t first = 0; first < pixels; first += chunk) {
      const int64_t count = pixels - first < chunk ? pixels - first : chunk;
      __syncthreads();
      stage_patches(g, x, t, first, count, patches);
      __syncthreads();
      if (f < g.features) {
        for (int64_t p = 0; p < count; ++p) {
          scalar_t u = bias[f];
          for (int64_t k = 0; k < g.k_total; ++k) u += weight_t[k * g.features + f] * patches[p * g.k_total + k];
          acc += rff_patch::feature(u);
        }
      }
    }
    if (f < g.features) sums[tile * g.features + f] = acc;
  }
}

// out[n, f, a, b] = mean of the tile sums inside window (a, b); one thread per output.
template <typename scalar_t>
__global__ void window_mean_kernel(const scalar_t* __restrict__ sums, const int64_t* __restrict__ row_windows,
                                   const int64_t* __restrict__ col_windows, scalar_t* __restrict__ out,
                                   int64_t total, int64_t features, int64_t pooled_h, int64_t pooled_w,
                                   int64_t row_segments, int64_t col_segments, int64_t window) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t b = i % pooled_w, a = (i / pooled_w) % pooled_h, f = (i / (pooled_w * pooled_h)) % features;
    const int64_t n = i / (pooled_w * pooled_h * features);
    const scalar_t* s = sums + n * row_segments * col_segments * features + f;
    out[i] = rff_patch::window_mean(s, col_segments, features, row_windows[2 * a], row_windows[2 * a + 1],
                                    col_windows[2 * b], col_windows[2 * b + 1], window);
  }
}

// tile_grad[tile, f] = -(sum of the pooled grads of the tile's windows) / W^2 (the minus is dz/du's).
template <typename scalar_t>
__global__ void tile_gradient_kernel(Geometry g, const scalar_t* __restrict__ grad, scalar_t* __restrict__ tile_grad,
                                     int64_t total, int64_t pooled_h, int64_t pooled_w, int64_t window) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t f = i % g.features, tile = i / g.features;
    const int64_t per_image = g.row_segments * g.col_segments, n = tile / per_image;
    const WindowRange rows = range_of(g.row_ranges, (tile % per_image) / g.col_segments);
    const WindowRange cols = range_of(g.col_ranges, tile % g.col_segments);
    scalar_t value = 0;
    if (!rows.empty() && !cols.empty())
      value = -rff_patch::tile_gradient(grad + (n * g.features + f) * pooled_h * pooled_w, pooled_w, rows, cols,
                                        window);
    tile_grad[i] = value;
  }
}

// dpatches[n, pixel, k] = sum_f sin(w_f . p + b_f) tile_grad[f] w_f[k] for the pixels of one tile.
// Shared memory: patches [chunk, K], du [chunk, kThreads], dp [chunk, K].
template <typename scalar_t>
__global__ void patch_gradient_kernel(Geometry g, const scalar_t* __restrict__ x, const scalar_t* __restrict__ weight_t,
                                      const scalar_t* __restrict__ bias, const scalar_t* __restrict__ tile_grad,
                                      scalar_t* __restrict__ dpatches, int64_t chunk, int64_t tiles, int64_t map_w,
                                      int64_t map_pixels) {
  extern __shared__ unsigned char shared_raw[];
  scalar_t* patches = reinterpret_cast<scalar_t*>(shared_raw);
  scalar_t* du = patches + chunk * g.k_total;
  scalar_t* dp = du + chunk * kThreads;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const TileCoords t = tile_coords(g, tile);
    // Tiles outside every window keep their zero gradient (block-uniform branch).
    if (range_of(g.row_ranges, t.row_segment).empty() || range_of(g.col_ranges, t.col_segment).empty()) continue;
    const int64_t pixels = t.rows * t.cols;
    for (int64_t first = 0; first < pixels; first += chunk) {
      const int64_t count = pixels - first < chunk ? pixels - first : chunk;
      __syncthreads();
      stage_patches(g, x, t, first, count, patches);
      for (int64_t e = threadIdx.x; e < count * g.k_total; e += blockDim.x) dp[e] = 0;
      for (int64_t f0 = 0; f0 < g.features; f0 += kThreads) {
        __syncthreads();
        const int64_t f = f0 + threadIdx.x;
        for (int64_t p = 0; p < count; ++p) {
          scalar_t value = 0;
          if (f < g.features) {
            scalar_t u = bias[f];
            for (int64_t k = 0; k < g.k_total; ++k) u += weight_t[k * g.features + f] * patches[p * g.k_total + k];
            value = -rff_patch::feature_derivative(u) * tile_grad[tile * g.features + f];
          }
          du[p * kThreads + threadIdx.x] = value;
        }
        __syncthreads();
        const int64_t width = g.features - f0 < kThreads ? g.features - f0 : kThreads;
        for (int64_t e = threadIdx.x; e < count * g.k_total; e += blockDim.x) {
          const int64_t p = e / g.k_total, k = e % g.k_total;
          scalar_t sum = 0;
          for (int64_t q = 0; q < width; ++q) sum += du[p * kThreads + q] * weight_t[k * g.features + f0 + q];
          dp[e] += sum;
        }
      }
      __syncthreads();
      for (int64_t e = threadIdx.x; e < count * g.k_total; e += blockDim.x) {
        const int64_t pixel = first + e / g.k_total, k = e % g.k_total;
        const int64_t i = t.row0 + pixel / t.cols, j = t.col0 + pixel % t.cols;
        dpatches[(t.n * map_pixels + i * map_w + j) * g.k_total + k] = dp[e];
      }
    }
  }
}

template <typename scalar_t>
__global__ void input_gradient_kernel(const scalar_t* __restrict__ dpatches, scalar_t* __restrict__ dx, int64_t total,
                                      int64_t channels, int64_t height, int64_t width, int64_t patch, int64_t map_h,
                                      int64_t map_w, int64_t k_total) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t xx = i % width, y = (i / width) % height, c = (i / (width * height)) % channels;
    const int64_t n = i / (width * height * channels);
    dx[i] = rff_patch::input_gradient(dpatches + n * map_h * map_w * k_total, c, y, xx, patch, height, width, map_h,
                                      map_w, k_total);
  }
}

int grid_for(int64_t total) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>((total + kThreads - 1) / kThreads, kMaxBlocks)));
}

// Plan tensors on the device, kept alive for the launches.
struct DevicePlan {
  at::Tensor row_bounds, col_bounds, row_ranges, col_ranges;
  Geometry geometry;

  DevicePlan(const Plan& plan, const at::Device& device) {
    const auto to = [&](const at::Tensor& t) { return t.to(device); };
    row_bounds = to(plan.rows.bounds_tensor());
    col_bounds = to(plan.cols.bounds_tensor());
    row_ranges = to(plan.rows.ranges_tensor());
    col_ranges = to(plan.cols.ranges_tensor());
    geometry = Geometry{plan.channels, plan.rows.image, plan.cols.image, plan.patch, plan.patch_elements(),
                        plan.features, plan.rows.segments(), plan.cols.segments(),
                        row_bounds.data_ptr<int64_t>(), col_bounds.data_ptr<int64_t>(),
                        row_ranges.data_ptr<int64_t>(), col_ranges.data_ptr<int64_t>()};
  }
};

void check_device_inputs(const char* op, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                         int64_t window, int64_t stride) {
  rff_patch::check_inputs(op, x, weight, bias, window, stride);
  check_dtype(x, {at::kFloat, at::kDouble}, op, "x");
}

at::Tensor rff_patch_features_cuda(const at::Tensor& x_in, const at::Tensor& weight_in, const at::Tensor& bias_in,
                                   int64_t window, int64_t stride) {
  check_device_inputs("rff_patch_features", x_in, weight_in, bias_in, window, stride);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const Plan plan(x_in, weight_in, window, stride);
  auto out = at::empty({plan.batch, plan.features, plan.rows.windows, plan.cols.windows}, x_in.options());
  if (out.numel() == 0) return out;
  const auto x = x_in.contiguous();
  const auto weight_t = weight_in.reshape({plan.features, -1}).t().contiguous();  // [K, F]
  const auto bias = bias_in.contiguous();
  const DevicePlan dplan(plan, x.device());
  const int64_t tiles = plan.batch * plan.rows.segments() * plan.cols.segments();
  auto sums = at::empty({tiles, plan.features}, x.options());
  const auto row_windows = plan.rows.window_segments_tensor().to(x.device());
  const auto col_windows = plan.cols.window_segments_tensor().to(x.device());
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rff_patch_features_cuda", [&] {
    const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(64, kSharedBytes / (plan.patch_elements() * sizeof(scalar_t))));
    const dim3 grid(static_cast<unsigned>(std::min(tiles, kMaxBlocks)),
                    static_cast<unsigned>((plan.features + kThreads - 1) / kThreads));
    tile_sums_kernel<scalar_t><<<grid, kThreads, chunk * plan.patch_elements() * sizeof(scalar_t), stream>>>(
        dplan.geometry, x.data_ptr<scalar_t>(), weight_t.data_ptr<scalar_t>(), bias.data_ptr<scalar_t>(),
        sums.data_ptr<scalar_t>(), chunk, tiles);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    window_mean_kernel<scalar_t><<<grid_for(out.numel()), kThreads, 0, stream>>>(
        sums.data_ptr<scalar_t>(), row_windows.data_ptr<int64_t>(), col_windows.data_ptr<int64_t>(),
        out.data_ptr<scalar_t>(), out.numel(), plan.features, plan.rows.windows, plan.cols.windows,
        plan.rows.segments(), plan.cols.segments(), window);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor rff_patch_features_backward_cuda(const at::Tensor& grad_in, const at::Tensor& x_in,
                                            const at::Tensor& weight_in, const at::Tensor& bias_in, int64_t window,
                                            int64_t stride) {
  const char* op = "rff_patch_features_backward";
  check_device_inputs(op, x_in, weight_in, bias_in, window, stride);
  check_rank(grad_in, 4, op, "grad", "[N, F, h', w']");
  check_same(grad_in, x_in, op, "grad", "x");
  const c10::cuda::CUDAGuard guard(x_in.device());
  const Plan plan(x_in, weight_in, window, stride);
  TORCH_CHECK(grad_in.sizes() == at::IntArrayRef({plan.batch, plan.features, plan.rows.windows, plan.cols.windows}),
              op, ": grad must be [N, F, h', w'] = [", plan.batch, ", ", plan.features, ", ", plan.rows.windows, ", ",
              plan.cols.windows, "], got ", grad_in.sizes());
  auto dx = at::empty(x_in.sizes(), x_in.options());
  if (dx.numel() == 0) return dx;
  if (grad_in.numel() == 0) return dx.zero_();
  const auto x = x_in.contiguous();
  const auto grad = grad_in.contiguous();
  const auto weight_t = weight_in.reshape({plan.features, -1}).t().contiguous();  // [K, F]
  const auto bias = bias_in.contiguous();
  const DevicePlan dplan(plan, x.device());
  const int64_t tiles = plan.batch * plan.rows.segments() * plan.cols.segments();
  const int64_t k_total = plan.patch_elements(), map_h = plan.rows.map, map_w = plan.cols.map;
  auto tile_grad = at::empty({tiles, plan.features}, x.options());
  // Pixels in no window keep a zero patch gradient.
  auto dpatches = at::zeros({plan.batch, map_h * map_w, k_total}, x.options());
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rff_patch_features_backward_cuda", [&] {
    tile_gradient_kernel<scalar_t><<<grid_for(tile_grad.numel()), kThreads, 0, stream>>>(
        dplan.geometry, grad.data_ptr<scalar_t>(), tile_grad.data_ptr<scalar_t>(), tile_grad.numel(),
        plan.rows.windows, plan.cols.windows, window);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    // Shared memory per pixel of a chunk: its patch, its patch gradient and kThreads feature grads.
    const int64_t per_pixel = (2 * k_total + kThreads) * sizeof(scalar_t);
    const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(16, kSharedBytes / per_pixel));
    patch_gradient_kernel<scalar_t><<<static_cast<unsigned>(std::min(tiles, kMaxBlocks)), kThreads,
                                      chunk * per_pixel, stream>>>(
        dplan.geometry, x.data_ptr<scalar_t>(), weight_t.data_ptr<scalar_t>(), bias.data_ptr<scalar_t>(),
        tile_grad.data_ptr<scalar_t>(), dpatches.data_ptr<scalar_t>(), chunk, tiles, map_w, map_h * map_w);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    input_gradient_kernel<scalar_t><<<grid_for(dx.numel()), kThreads, 0, stream>>>(
        dpatches.data_ptr<scalar_t>(), dx.data_ptr<scalar_t>(), dx.numel(), plan.channels, plan.rows.image,
        plan.cols.image, plan.patch, map_h, map_w, k_total);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return dx;
}

}  // namespace

TORCH_LIBRARY_IMPL(perceptual_ext, CUDA, m) {
  m.impl("rff_patch_features", &rff_patch_features_cuda);
  m.impl("rff_patch_features_backward", &rff_patch_features_backward_cuda);
}

}  // namespace perceptual_ext
