// Colorization cross-entropy with soft-encoded targets, CPU. Pixels are processed in runs of
// kRun consecutive pixels of one image: the logits of a run are read class by class as
// contiguous rows (a [Q, kRun] panel), so the max, the exp-sum and the gradient vectorize across
// pixels (Sleef exp through at::vec::Vectorized). Per pixel the target is encoded by the shared
// maths (common/soft_encoded_cross_entropy.h): nearest bins by the grid search, Gaussian weights,
// rebalancing weight. Nothing of size [N, Q, H, W] is allocated besides the gradient itself; the
// backward pass recomputes the targets and the softmax from the saved log-sum-exp.
#include "cpu/simd.h"  // before any ATen header

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "common/soft_encoded_cross_entropy.h"
#include "host/soft_encoded_cross_entropy_grid.h"
#include "host/registration.h"

namespace perceptual_ext {
namespace {

namespace sece = soft_encoded_cross_entropy;

constexpr int64_t kRun = 64;

// One run of pixels [p0, p0 + len) of image n.
struct Run {
  int64_t n, p0, len;
};

Run run_of(int64_t index, int64_t runs_per_image, int64_t hw) {
  const int64_t n = index / runs_per_image, p0 = (index % runs_per_image) * kRun;
  return {n, p0, std::min(kRun, hw - p0)};
}

// lse[p] = log sum_q exp(x[q * hw + p]) for the run's pixels (two passes over the panel).
template <typename scalar_t>
void run_logsumexp(const scalar_t* x, int64_t classes, int64_t hw, int64_t len, scalar_t* lse) {
  using Vec = at::vec::Vectorized<scalar_t>;
  constexpr int64_t kV = Vec::size();
  const int64_t vec_end = len - len % kV;
  scalar_t m[kRun], s[kRun];
  std::copy(x, x + len, m);
  for (int64_t q = 1; q < classes; ++q) {
    const scalar_t* row = x + q * hw;
    int64_t p = 0;
    for (; p < vec_end; p += kV) at::vec::maximum(Vec::loadu(m + p), Vec::loadu(row + p)).store(m + p);
    for (; p < len; ++p) m[p] = (row[p] > m[p] || row[p] != row[p]) ? row[p] : m[p];
  }
  std::fill(s, s + len, scalar_t(0));
  for (int64_t q = 0; q < classes; ++q) {
    const scalar_t* row = x + q * hw;
    int64_t p = 0;
    for (; p < vec_end; p += kV) (Vec::loadu(s + p) + (Vec::loadu(row + p) - Vec::loadu(m + p)).exp()).store(s + p);
    for (; p < len; ++p) s[p] += std::exp(row[p] - m[p]);
  }
  for (int64_t p = 0; p < len; ++p) lse[p] = (m[p] - m[p] == scalar_t(0)) ? m[p] + std::log(s[p]) : m[p];
}

template <typename scalar_t>
sece::Target<scalar_t> target_of(const sece::Grid& grid, const scalar_t* ab, const scalar_t* bins,
                                 const scalar_t* weights, int64_t hw, int64_t p, int k, scalar_t sigma) {
  sece::Target<scalar_t> t;
  sece::encode(grid, bins, weights, ab[p], ab[hw + p], k, sigma, t);
  return t;
}

std::tuple<at::Tensor, at::Tensor> forward_cpu(const at::Tensor& logits_in, const at::Tensor& ab_in,
                                               const at::Tensor& bins_in, const at::Tensor& weights_in,
                                               int64_t neighbors, double sigma) {
  const auto c = sece::forward_call(logits_in, ab_in, bins_in, weights_in, neighbors, sigma, {at::kFloat, at::kDouble});
  if (c.loss.numel() == 0) return {c.loss, c.lse};
  const auto view = c.grid.view();
  const int64_t n = c.n, hw = c.hw, classes = c.classes;
  const int64_t runs_per_image = (hw + kRun - 1) / kRun;
  AT_DISPATCH_FLOATING_TYPES(c.logits.scalar_type(), "soft_encoded_cross_entropy_cpu", [&] {
    const scalar_t* x = c.logits.data_ptr<scalar_t>();
    const scalar_t* t_ab = c.ab.data_ptr<scalar_t>();
    const scalar_t* b = c.bins.data_ptr<scalar_t>();
    const scalar_t* w = c.weights_data<scalar_t>();
    scalar_t* out = c.loss.data_ptr<scalar_t>();
    scalar_t* out_lse = c.lse.data_ptr<scalar_t>();
    const auto s = static_cast<scalar_t>(sigma);
    at::parallel_for(0, n * runs_per_image, 1, [&](int64_t begin, int64_t end) {
      for (int64_t index = begin; index < end; ++index) {
        const Run r = run_of(index, runs_per_image, hw);
        const scalar_t* panel = x + r.n * classes * hw + r.p0;
        scalar_t* run_lse = out_lse + r.n * hw + r.p0;
        run_logsumexp(panel, classes, hw, r.len, run_lse);
        for (int64_t p = 0; p < r.len; ++p) {
          const auto t = target_of(view, t_ab + r.n * 2 * hw, b, w, hw, r.p0 + p, static_cast<int>(neighbors), s);
          const scalar_t target = sece::target_logit(panel + p, hw, t.nearest, t.z);
          out[r.n * hw + r.p0 + p] = sece::pixel_loss(t.v, run_lse[p], target);
        }
      }
    });
  });
  return {c.loss, c.lse};
}

at::Tensor backward_cpu(const at::Tensor& grad_in, const at::Tensor& logits_in, const at::Tensor& ab_in,
                        const at::Tensor& bins_in, const at::Tensor& weights_in, const at::Tensor& lse_in,
                        int64_t neighbors, double sigma) {
  const auto c = sece::backward_call(grad_in, logits_in, ab_in, bins_in, weights_in, lse_in, neighbors, sigma);
  if (c.out.numel() == 0) return c.out;
  const auto view = c.grid.view();
  const int64_t n = c.n, hw = c.hw, classes = c.classes;
  const int64_t runs_per_image = (hw + kRun - 1) / kRun;
  AT_DISPATCH_FLOATING_TYPES(c.logits.scalar_type(), "soft_encoded_cross_entropy_backward_cpu", [&] {
    using Vec = at::vec::Vectorized<scalar_t>;
    constexpr int64_t kV = Vec::size();
    const scalar_t* x = c.logits.data_ptr<scalar_t>();
    const scalar_t* t_ab = c.ab.data_ptr<scalar_t>();
    const scalar_t* b = c.bins.data_ptr<scalar_t>();
    const scalar_t* w = c.weights_data<scalar_t>();
    const scalar_t* g = c.grad.data_ptr<scalar_t>();
    const scalar_t* l = c.lse.data_ptr<scalar_t>();
    scalar_t* dx = c.out.data_ptr<scalar_t>();
    const auto s = static_cast<scalar_t>(sigma);
    at::parallel_for(0, n * runs_per_image, 1, [&](int64_t begin, int64_t end) {
      scalar_t scale[kRun];
      sece::Target<scalar_t> targets[kRun];
      for (int64_t index = begin; index < end; ++index) {
        const Run r = run_of(index, runs_per_image, hw);
        const int64_t offset = r.n * classes * hw + r.p0;
        const scalar_t* run_lse = l + r.n * hw + r.p0;
        for (int64_t p = 0; p < r.len; ++p) {
          targets[p] = target_of(view, t_ab + r.n * 2 * hw, b, w, hw, r.p0 + p, static_cast<int>(neighbors), s);
          scale[p] = g[r.n * hw + r.p0 + p] * targets[p].v;
        }
        const int64_t vec_end = r.len - r.len % kV;
        for (int64_t q = 0; q < classes; ++q) {
          const scalar_t* row = x + offset + q * hw;
          scalar_t* drow = dx + offset + q * hw;
          int64_t p = 0;
          for (; p < vec_end; p += kV)
            (Vec::loadu(scale + p) * (Vec::loadu(row + p) - Vec::loadu(run_lse + p)).exp()).store(drow + p);
          for (; p < r.len; ++p) drow[p] = sece::softmax_grad(scale[p], row[p], run_lse[p]);
        }
        for (int64_t p = 0; p < r.len; ++p) {
          const auto& t = targets[p];
          for (int j = 0; j < t.nearest.count; ++j)
            dx[offset + static_cast<int64_t>(t.nearest.bin[j]) * hw + p] -= scale[p] * t.z[j];
        }
      }
    });
  });
  return c.out;
}

}  // namespace

TORCH_LIBRARY_IMPL(perceptual_ext, CPU, m) {
  impl_with_backward(m, "soft_encoded_cross_entropy", &forward_cpu, &backward_cpu);
}

}  // namespace perceptual_ext
