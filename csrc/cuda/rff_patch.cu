// Patch random Fourier features, CUDA. The tiling is common/rff_patch.h's closed form: every
// block computes its tile from the two Axis values it gets by value (nothing is copied to the
// device per call), and the arithmetic -- patch elements, projections, cos/sin, window means,
// tile gradients, the col2im gather -- is the shared maths the CPU kernel and the C++ tests use.
// What is left here is the thread mapping:
//   forward   one block per (tile, part of <= kPartPixels pixels, chunk of kThreads features);
//             the block stages kPixels patches at a time in shared memory, kChunkK elements at a
//             time (fixed shared memory whatever C P^2 is), each thread keeps its feature's
//             partial sum in a register; the parts of a tile are added in double by a second
//             kernel (no atomics), and a third averages tile sums into windows.
//   backward  one block per (tile, part): per chunk of kThreads features, du = -sin(u) g goes to
//             shared memory, and every thread adds its (pixel, element)'s share of du . w to the
//             per-pixel patch gradient (each element is owned by one thread); a last kernel
//             gathers patch gradients into the input through the reflection.
// A global window (window = stride = image size) is one tile cut into many parts, so it fills
// the GPU like any other geometry.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "common/rff_patch.h"
#include "cuda/helpers.h"
#include "host/rff_patch_plan.h"
#include "host/registration.h"

namespace perceptual_ext {
namespace {

using cuda::kThreads;
using rff_patch::Axis;
using rff_patch::kPartPixels;
using rff_patch::Plan;
using rff_patch::Tile;

// Patch elements staged at once, and pixels per stage: 16 KiB of patches (float32) or 16 KiB
// (float64), plus the same again for du in the backward, far below the 48 KiB default.
constexpr int64_t kChunkK = 256;
template <typename T>
constexpr int kPixels = sizeof(T) == 4 ? 16 : 8;

// Sizes passed by value to every kernel.
struct Geometry {
  Axis rows, cols;
  int64_t channels, patch, k_total, features, parts;  // parts per tile

  __device__ Tile tile(int64_t index) const { return rff_patch::tile_of(rows, cols, index); }
  // Pixels [first, last) of part `part` of tile t (empty for parts past the tile or an unpooled tile).
  __device__ void part_pixels(const Tile& t, int64_t part, int64_t& first, int64_t& last) const {
    const int64_t pixels = t.pooled() ? t.pixels() : 0;
    first = part * kPartPixels;
    last = first + kPartPixels < pixels ? first + kPartPixels : pixels;
  }
};

// patches[t, e] = element k0 + e of the patch of tile pixel p0 + t, for t < count, e < kc.
template <typename T>
__device__ void stage_patch_chunk(const Geometry& g, const T* __restrict__ image, const Tile& t, int64_t p0,
                                  int64_t count, int64_t k0, int64_t kc, T* patches) {
  for (int64_t e = threadIdx.x; e < count * kc; e += blockDim.x) {
    const int64_t p = p0 + e / kc;
    patches[(e / kc) * kChunkK + e % kc] =
        rff_patch::patch_element(image, g.rows.image, g.cols.image, g.patch, t.row_of(p), t.col_of(p), k0 + e % kc);
  }
}

// u[t] = b_f + w_f . patch(p0 + t) for the block's `count` pixels, the patches fed through shared
// memory kChunkK elements at a time. Every thread of the block must call it (it synchronizes).
template <typename T>
__device__ void project_block(const Geometry& g, const T* __restrict__ image, const T* __restrict__ weight_t, T bias_f,
                              bool active, int64_t f, const Tile& t, int64_t p0, int64_t count, T* patches, T* u) {
  PE_UNROLL
  for (int q = 0; q < kPixels<T>; ++q) u[q] = bias_f;
  for (int64_t k0 = 0; k0 < g.k_total; k0 += kChunkK) {
    const int64_t kc = g.k_total - k0 < kChunkK ? g.k_total - k0 : kChunkK;
    __syncthreads();
    stage_patch_chunk(g, image, t, p0, count, k0, kc, patches);
    __syncthreads();
    if (active)
      rff_patch::project_pixels<kPixels<T>>(weight_t + k0 * g.features + f, g.features, patches, kChunkK, kc, count, u);
  }
}

// partial[item, f] = sum of cos(w_f . p + b_f) over the pixels of part item % parts of tile
// item / parts (<= kPartPixels terms). Grid: (items, feature chunks).
template <typename T>
__global__ void part_sums_kernel(Geometry g, const T* __restrict__ x, const T* __restrict__ weight_t,
                                 const T* __restrict__ bias, T* __restrict__ partial, int64_t items) {
  __shared__ T patches[kPixels<T> * kChunkK];
  const int64_t f = blockIdx.y * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const bool active = f < g.features;
  const T bias_f = active ? bias[f] : T(0);
  for (int64_t item = blockIdx.x; item < items; item += gridDim.x) {
    const Tile t = g.tile(item / g.parts);
    int64_t first, last;
    g.part_pixels(t, item % g.parts, first, last);
    const T* image = x + t.n * g.channels * g.rows.image * g.cols.image;
    T acc = 0;
    for (int64_t p0 = first; p0 < last; p0 += kPixels<T>) {  // block-uniform bounds
      const int64_t count = last - p0 < kPixels<T> ? last - p0 : kPixels<T>;
      T u[kPixels<T>];
      project_block(g, image, weight_t, bias_f, active, f, t, p0, count, patches, u);
      PE_UNROLL
      for (int q = 0; q < kPixels<T>; ++q)
        if (q < count) acc += rff_patch::feature(u[q]);
    }
    if (active) partial[item * g.features + f] = acc;
  }
}

// sums[tile, f] = the parts of the tile added in double.
template <typename T>
__global__ void tile_sums_kernel(const T* __restrict__ partial, T* __restrict__ sums, int64_t total, int64_t parts,
                                 int64_t features) {
  PE_GRID_STRIDE_LOOP(i, total) {
    const int64_t f = i % features, tile = i / features;
    double sum = 0;
    for (int64_t p = 0; p < parts; ++p) sum += static_cast<double>(partial[(tile * parts + p) * features + f]);
    sums[i] = static_cast<T>(sum);
  }
}

// out[n, f, a, b] = mean of the tile sums inside window (a, b); one thread per output.
template <typename T>
__global__ void window_mean_kernel(Geometry g, const T* __restrict__ sums, T* __restrict__ out, int64_t total,
                                   int64_t window) {
  const int64_t pooled_h = g.rows.windows, pooled_w = g.cols.windows;
  const int64_t row_segments = g.rows.segments(), col_segments = g.cols.segments();
  PE_GRID_STRIDE_LOOP(i, total) {
    const int64_t b = i % pooled_w, a = (i / pooled_w) % pooled_h, f = (i / (pooled_w * pooled_h)) % g.features;
    const int64_t n = i / (pooled_w * pooled_h * g.features);
    const auto rs = g.rows.segments_of(a), cs = g.cols.segments_of(b);
    out[i] = rff_patch::window_mean(sums + n * row_segments * col_segments * g.features + f, col_segments, g.features,
                                    rs.first, rs.last, cs.first, cs.last, window);
  }
}

// dpatches[n, pixel, k] = sum_f -sin(w_f . p + b_f) g_f w_f[k] for the pixels of one part of a
// tile, g_f = the tile's pooled gradient. Grid: items (tile, part).
template <typename T>
__global__ void patch_gradient_kernel(Geometry g, const T* __restrict__ x, const T* __restrict__ weight,
                                      const T* __restrict__ weight_t, const T* __restrict__ bias,
                                      const T* __restrict__ grad, T* __restrict__ dpatches, int64_t items,
                                      int64_t window) {
  __shared__ T patches[kPixels<T> * kChunkK];
  __shared__ T du[kPixels<T> * kThreads];
  const int64_t map_pixels = g.rows.map * g.cols.map, pooled = g.rows.windows * g.cols.windows;
  for (int64_t item = blockIdx.x; item < items; item += gridDim.x) {
    const Tile t = g.tile(item / g.parts);
    int64_t first, last;
    g.part_pixels(t, item % g.parts, first, last);  // empty outside every window: zero gradient
    const T* image = x + t.n * g.channels * g.rows.image * g.cols.image;
    for (int64_t p0 = first; p0 < last; p0 += kPixels<T>) {
      const int64_t count = last - p0 < kPixels<T> ? last - p0 : kPixels<T>;
      for (int64_t f0 = 0; f0 < g.features; f0 += kThreads) {
        const int64_t f = f0 + threadIdx.x;
        const bool active = f < g.features;
        T u[kPixels<T>];
        project_block(g, image, weight_t, active ? bias[f] : T(0), active, f, t, p0, count, patches, u);
        const T g_f = active ? rff_patch::tile_gradient(grad + (t.n * g.features + f) * pooled, g.cols.windows,
                                                        t.row_windows, t.col_windows, window)
                             : T(0);
        PE_UNROLL
        for (int q = 0; q < kPixels<T>; ++q)
          if (q < count) du[q * kThreads + threadIdx.x] = active ? rff_patch::feature_derivative(u[q]) * g_f : T(0);
        __syncthreads();
        const int64_t width = g.features - f0 < kThreads ? g.features - f0 : kThreads;
        for (int64_t e = threadIdx.x; e < count * g.k_total; e += blockDim.x) {
          const int64_t q = e / g.k_total, k = e % g.k_total, p = p0 + q;
          // sum over the chunk's features of du[q, f] w_f[k]: weight [F, K] read down column k.
          const T share = rff_patch::projection(weight + f0 * g.k_total + k, g.k_total, du + q * kThreads, width, T(0));
          T& dst = dpatches[(t.n * map_pixels + t.row_of(p) * g.cols.map + t.col_of(p)) * g.k_total + k];
          dst = f0 == 0 ? share : dst + share;  // this thread owns element e for every f0
        }
        // project_block's first barrier keeps du intact until every thread has read it.
      }
    }
  }
}

template <typename T>
__global__ void input_gradient_kernel(Geometry g, const T* __restrict__ dpatches, T* __restrict__ dx, int64_t total) {
  const int64_t height = g.rows.image, width = g.cols.image;
  PE_GRID_STRIDE_LOOP(i, total) {
    const int64_t xx = i % width, y = (i / width) % height, c = (i / (width * height)) % g.channels;
    const int64_t n = i / (width * height * g.channels);
    dx[i] = rff_patch::input_gradient(dpatches + n * g.rows.map * g.cols.map * g.k_total, c, y, xx, g.patch, height,
                                      width, g.rows.map, g.cols.map, g.k_total);
  }
}

Geometry geometry_of(const Plan& plan) {
  Geometry g;
  g.rows = plan.rows;
  g.cols = plan.cols;
  g.channels = plan.channels;
  g.patch = plan.patch;
  g.k_total = plan.patch_elements();
  g.features = plan.features;
  g.parts = std::max<int64_t>(1, rff_patch::parts_of(plan.max_tile_pixels()));
  return g;
}

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
  const auto weight_t = weight_in.reshape({plan.features, plan.patch_elements()}).t().contiguous();  // [K, F]
  const auto bias = bias_in.contiguous();
  const Geometry g = geometry_of(plan);
  const int64_t tiles = plan.tiles(), items = tiles * g.parts;
  auto partial = at::empty({items, plan.features}, x.options());
  // One part per tile (the usual window 32 / stride 16 tiles are 256 pixels): the parts are the sums.
  auto sums = g.parts == 1 ? partial : at::empty({tiles, plan.features}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rff_patch_features_cuda", [&] {
    const dim3 grid(cuda::blocks_for_items(items), cuda::blocks_for_items((plan.features + kThreads - 1) / kThreads));
    cuda::launch(part_sums_kernel<scalar_t>, grid, g, x.data_ptr<scalar_t>(), weight_t.data_ptr<scalar_t>(),
                 bias.data_ptr<scalar_t>(), partial.data_ptr<scalar_t>(), items);
    if (g.parts > 1) {
      cuda::launch(tile_sums_kernel<scalar_t>, cuda::grid_size(sums.numel()), partial.data_ptr<scalar_t>(),
                   sums.data_ptr<scalar_t>(), sums.numel(), g.parts, plan.features);
    }
    cuda::launch(window_mean_kernel<scalar_t>, cuda::grid_size(out.numel()), g, sums.data_ptr<scalar_t>(),
                 out.data_ptr<scalar_t>(), out.numel(), window);
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
  TORCH_CHECK(grad_in.sizes() == at::IntArrayRef({plan.batch, plan.features, plan.rows.windows, plan.cols.windows}), op,
              ": grad must be [N, F, h', w'] = [", plan.batch, ", ", plan.features, ", ", plan.rows.windows, ", ",
              plan.cols.windows, "], got ", grad_in.sizes());
  auto dx = at::empty(x_in.sizes(), x_in.options());
  if (dx.numel() == 0) return dx;
  if (grad_in.numel() == 0) return dx.zero_();
  const auto x = x_in.contiguous();
  const auto grad = grad_in.contiguous();
  const auto weight = weight_in.reshape({plan.features, plan.patch_elements()}).contiguous();  // [F, K]
  const auto weight_t = weight.t().contiguous();                                               // [K, F]
  const auto bias = bias_in.contiguous();
  const Geometry g = geometry_of(plan);
  const int64_t items = plan.tiles() * g.parts;
  // Pixels in no window keep a zero patch gradient.
  auto dpatches = at::zeros({plan.batch, plan.rows.map * plan.cols.map, g.k_total}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rff_patch_features_backward_cuda", [&] {
    cuda::launch(patch_gradient_kernel<scalar_t>, cuda::blocks_for_items(items), g, x.data_ptr<scalar_t>(),
                 weight.data_ptr<scalar_t>(), weight_t.data_ptr<scalar_t>(), bias.data_ptr<scalar_t>(),
                 grad.data_ptr<scalar_t>(), dpatches.data_ptr<scalar_t>(), items, window);
    cuda::launch(input_gradient_kernel<scalar_t>, cuda::grid_size(dx.numel()), g, dpatches.data_ptr<scalar_t>(),
                 dx.data_ptr<scalar_t>(), dx.numel());
  });
  return dx;
}

}  // namespace

TORCH_LIBRARY_IMPL(perceptual_ext, CUDA, m) {
  impl_with_backward(m, "rff_patch_features", &rff_patch_features_cuda, &rff_patch_features_backward_cuda);
}

}  // namespace perceptual_ext
