// Patch random Fourier features, CPU: per tile of pixels, gather reflect-padded patches
// [T, C P P], one BLAS GEMM against weight^T [C P P, F] into a cache-resident [T, F] buffer,
// then cos (Sleef through at::vec::Vectorized) summed over parts of <= 256 pixels, the parts
// added in double (common/rff_patch.h). (Computing u with
// our own register-blocked FMAs instead was ~1.4x slower than MKL's GEMM.) Tiles are
// segment x segment blocks (common/rff_patch.h), so every pixel of a tile feeds the same windows and nothing of size
// [N, F, H, W] ever exists. Backward recomputes u the same way, turns it into sin(u) * (pooled gradient) in place (no
// cos) for a block of pixels and multiplies that by the weight with BLAS.

#include "cpu/simd.h"  // before any ATen header

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "common/rff_patch.h"
#include "host/rff_patch_plan.h"
#include "host/registration.h"

namespace perceptual_ext {
namespace {

using rff_patch::Plan;
using rff_patch::Tile;

// Pixels gathered at once: their patches [256, K] stay in L1/L2 while every feature chunk reads
// them; also the length of one partial sum (common/rff_patch.h).
constexpr int64_t kTilePixels = rff_patch::kPartPixels;

Tile tile_of(const Plan& plan, int64_t index) {
  return rff_patch::tile_of(plan.rows, plan.cols, index);
}

// patches[t, k] for pixels first..first+count-1 of the tile (row-major inside the tile).
template <typename scalar_t>
void gather_patches(const Plan& plan, const scalar_t* x, const Tile& tile, int64_t first, int64_t count,
                    scalar_t* patches) {
  const int64_t h = plan.rows.image, w = plan.cols.image, k_total = plan.patch_elements();
  const scalar_t* image = x + tile.n * plan.channels * h * w;
  for (int64_t t = 0; t < count; ++t)
    rff_patch::gather_patch(image, plan.channels, h, w, plan.patch, tile.row_of(first + t), tile.col_of(first + t),
                            patches + t * k_total);
}

// Pixels per backward block: its sin(u) g [64, F] stays in L2 for the BLAS product.
constexpr int64_t kBackwardPixels = 64;

template <typename scalar_t>
at::vec::Vectorized<scalar_t> load_lanes(const scalar_t* p, int64_t lanes) {
  using Vec = at::vec::Vectorized<scalar_t>;
  return lanes == Vec::size() ? Vec::loadu(p) : Vec::loadu(p, lanes);
}

// part[f] = sum over rows t of cos(u[t, f]), u [count, F] row-major (count <= kPartPixels terms in
// the input dtype), then acc[f] += part[f] in double.
template <typename scalar_t>
void add_cosines(const scalar_t* u, int64_t count, int64_t f_total, scalar_t* part, double* acc) {
  using Vec = at::vec::Vectorized<scalar_t>;
  for (int64_t f0 = 0; f0 < f_total; f0 += Vec::size()) {
    const int64_t lanes = std::min<int64_t>(Vec::size(), f_total - f0);
    Vec sum(0);
    for (int64_t t = 0; t < count; ++t) sum = sum + load_lanes(u + t * f_total + f0, lanes).cos();
    sum.store(part + f0, lanes);
  }
  for (int64_t f = 0; f < f_total; ++f) acc[f] += static_cast<double>(part[f]);
}

// u[t, f] <- sin(u[t, f]) * scale[f] in place, u [count, F] row-major.
template <typename scalar_t>
void scale_sines(scalar_t* u, int64_t count, int64_t f_total, const scalar_t* scale) {
  using Vec = at::vec::Vectorized<scalar_t>;
  for (int64_t f0 = 0; f0 < f_total; f0 += Vec::size()) {
    const int64_t lanes = std::min<int64_t>(Vec::size(), f_total - f0);
    const Vec g = load_lanes(scale + f0, lanes);
    for (int64_t t = 0; t < count; ++t) {
      scalar_t* row = u + t * f_total + f0;
      (load_lanes(row, lanes).sin() * g).store(row, lanes);
    }
  }
}

at::Tensor rff_patch_features_cpu(const at::Tensor& x_in, const at::Tensor& weight_in, const at::Tensor& bias_in,
                                  int64_t window, int64_t stride) {
  const char* op = "rff_patch_features";
  rff_patch::check_inputs(op, x_in, weight_in, bias_in, window, stride);
  check_dtype(x_in, {at::kFloat, at::kDouble}, op, "x");
  const auto x = x_in.contiguous();
  const Plan plan(x, weight_in, window, stride);
  // [F, K], K spelled out: a -1 cannot be inferred when C = 0 leaves the weight empty.
  const auto weight = weight_in.contiguous().view({plan.features, plan.patch_elements()});
  const auto bias = bias_in.contiguous();
  const int64_t f_total = plan.features, k_total = plan.patch_elements();
  auto out = at::empty({plan.batch, f_total, plan.rows.windows, plan.cols.windows}, x.options());
  if (out.numel() == 0) return out;

  // Tile sums of z, [N, row segments, col segments, F]: a few times the pooled output.
  auto sums = at::empty({plan.batch, plan.rows.segments(), plan.cols.segments(), f_total}, x.options());
  const int64_t tiles = plan.tiles();
  const auto weight_t = weight.t().contiguous();  // [K, F]
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rff_patch_features_cpu", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    scalar_t* sp = sums.data_ptr<scalar_t>();
    at::parallel_for(0, tiles, 1, [&](int64_t begin, int64_t end) {
      std::vector<scalar_t> patches(kTilePixels * k_total), part(f_total);
      std::vector<double> acc(f_total);
      const auto patches_t = at::from_blob(patches.data(), {kTilePixels, k_total}, x.options());
      auto u = at::empty({kTilePixels, f_total}, x.options());
      for (int64_t index = begin; index < end; ++index) {
        const Tile tile = tile_of(plan, index);
        std::fill(acc.begin(), acc.end(), 0.0);
        const int64_t pixels = tile.pooled() ? tile.pixels() : 0;
        for (int64_t first = 0; first < pixels; first += kTilePixels) {
          const int64_t count = std::min(kTilePixels, pixels - first);
          gather_patches(plan, xp, tile, first, count, patches.data());
          auto ut = u.narrow(0, 0, count);
          at::addmm_out(ut, bias, patches_t.narrow(0, 0, count), weight_t);
          add_cosines(ut.data_ptr<scalar_t>(), count, f_total, part.data(), acc.data());
        }
        for (int64_t f = 0; f < f_total; ++f) sp[index * f_total + f] = static_cast<scalar_t>(acc[f]);
      }
    });

    // out[n, f, a, b] = mean of the tile sums inside window (a, b).
    scalar_t* outp = out.data_ptr<scalar_t>();
    const int64_t pw = plan.cols.windows, hw = plan.rows.windows * pw, ncs = plan.cols.segments();
    at::parallel_for(0, plan.batch * f_total, 16, [&](int64_t begin, int64_t end) {
      for (int64_t index = begin; index < end; ++index) {
        const int64_t n = index / f_total, f = index % f_total;
        const scalar_t* s = sp + n * plan.rows.segments() * ncs * f_total + f;
        for (int64_t a = 0; a < plan.rows.windows; ++a) {
          const auto rs = plan.rows.segments_of(a);
          for (int64_t b = 0; b < pw; ++b) {
            const auto cs = plan.cols.segments_of(b);
            outp[index * hw + a * pw + b] =
                rff_patch::window_mean(s, ncs, f_total, rs.first, rs.last, cs.first, cs.last, window);
          }
        }
      }
    });
  });
  return out;
}

at::Tensor rff_patch_features_backward_cpu(const at::Tensor& grad_in, const at::Tensor& x_in,
                                           const at::Tensor& weight_in, const at::Tensor& bias_in, int64_t window,
                                           int64_t stride) {
  const char* op = "rff_patch_features_backward";
  rff_patch::check_inputs(op, x_in, weight_in, bias_in, window, stride);
  check_dtype(x_in, {at::kFloat, at::kDouble}, op, "x");
  check_rank(grad_in, 4, op, "grad", "[N, F, h', w']");
  check_same(grad_in, x_in, op, "grad", "x");
  const auto x = x_in.contiguous();
  const Plan plan(x, weight_in, window, stride);
  // [F, K], K spelled out: a -1 cannot be inferred when C = 0 leaves the weight empty.
  const auto weight = weight_in.contiguous().view({plan.features, plan.patch_elements()});
  const auto bias = bias_in.contiguous();
  TORCH_CHECK(grad_in.sizes() == at::IntArrayRef({plan.batch, plan.features, plan.rows.windows, plan.cols.windows}), op,
              ": grad must be [N, F, h', w'] = [", plan.batch, ", ", plan.features, ", ", plan.rows.windows, ", ",
              plan.cols.windows, "], got ", grad_in.sizes());
  const auto grad = grad_in.contiguous();
  auto dx = at::empty_like(x);
  if (dx.numel() == 0) return dx;
  if (grad.numel() == 0) return dx.zero_();
  const int64_t f_total = plan.features, k_total = plan.patch_elements();
  const int64_t map_h = plan.rows.map, map_w = plan.cols.map, p = plan.patch;
  const int64_t tiles = plan.tiles();
  // d loss / d patch element for every map pixel, [N, Ho Wo, K]: K/C times the input, and lets
  // the final col2im gather each input pixel's sum without write conflicts.
  auto dpatches = at::zeros({plan.batch, map_h * map_w, k_total}, x.options());
  // MKL runs [T, F] x [F, K] about 1.6x faster when K is padded to a multiple of 16 (K = 27 for
  // RGB 3x3 patches); the padding columns are zero and never copied out.
  const int64_t k_padded = (k_total + 15) / 16 * 16;
  auto weight_padded = at::zeros({f_total, k_padded}, x.options());
  weight_padded.narrow(1, 0, k_total).copy_(weight);
  const auto weight_t = weight.t().contiguous();  // [K, F]

  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rff_patch_features_backward_cpu", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* gp = grad.data_ptr<scalar_t>();
    const int64_t hw = plan.rows.windows * plan.cols.windows;
    at::parallel_for(0, tiles, 1, [&](int64_t begin, int64_t end) {
      std::vector<scalar_t> patches(kBackwardPixels * k_total), pooled_grad(f_total);
      const auto patches_t = at::from_blob(patches.data(), {kBackwardPixels, k_total}, x.options());
      auto du = at::empty({kBackwardPixels, f_total}, x.options());
      auto dp = at::empty({kBackwardPixels, k_padded}, x.options());
      for (int64_t index = begin; index < end; ++index) {
        const Tile tile = tile_of(plan, index);
        if (!tile.pooled()) continue;
        // Every pixel of the tile gets d loss / d z_f = (its windows' grads) / W^2, so
        // d loss / d u_f = -sin(u_f) g_f; the sign is folded into the sines' scale.
        for (int64_t f = 0; f < f_total; ++f)
          pooled_grad[f] = -rff_patch::tile_gradient(gp + (tile.n * f_total + f) * hw, plan.cols.windows,
                                                     tile.row_windows, tile.col_windows, window);
        const int64_t pixels = tile.pixels();
        for (int64_t first = 0; first < pixels; first += kBackwardPixels) {
          const int64_t count = std::min(kBackwardPixels, pixels - first);
          gather_patches(plan, xp, tile, first, count, patches.data());
          auto dut = du.narrow(0, 0, count);
          at::addmm_out(dut, bias, patches_t.narrow(0, 0, count), weight_t);
          scale_sines(dut.data_ptr<scalar_t>(), count, f_total, pooled_grad.data());
          auto dpt = dp.narrow(0, 0, count);
          at::mm_out(dpt, du.narrow(0, 0, count), weight_padded);
          const scalar_t* d = dp.data_ptr<scalar_t>();
          scalar_t* dst = dpatches.data_ptr<scalar_t>() + tile.n * map_h * map_w * k_total;
          for (int64_t t = 0; t < count; ++t)
            std::copy(d + t * k_padded, d + t * k_padded + k_total,
                      dst + (tile.row_of(first + t) * map_w + tile.col_of(first + t)) * k_total);
        }
      }
    });

    // col2im with reflection, as a gather: no two tasks write the same input pixel.
    const int64_t h = plan.rows.image, w = plan.cols.image, c_total = plan.channels;
    const scalar_t* dpp = dpatches.data_ptr<scalar_t>();
    scalar_t* dxp = dx.data_ptr<scalar_t>();
    at::parallel_for(0, plan.batch * c_total * h, 16, [&](int64_t begin, int64_t end) {
      for (int64_t index = begin; index < end; ++index) {
        const int64_t y = index % h, c = (index / h) % c_total, n = index / (h * c_total);
        const scalar_t* base = dpp + n * map_h * map_w * k_total;
        for (int64_t xx = 0; xx < w; ++xx)
          dxp[index * w + xx] = rff_patch::input_gradient(base, c, y, xx, p, h, w, map_h, map_w, k_total);
      }
    });
  });
  return dx;
}

}  // namespace

TORCH_LIBRARY_IMPL(perceptual_ext, CPU, m) {
  impl_with_backward(m, "rff_patch_features", &rff_patch_features_cpu, &rff_patch_features_backward_cpu);
}

}  // namespace perceptual_ext
