// Colorization cross-entropy with soft-encoded targets, CUDA: one thread per pixel (grid-stride
// loop). Adjacent threads take adjacent pixels, so every read of a class row of the logits (and
// every write of the gradient) is coalesced. The maths — grid search for the nearest bins,
// Gaussian weights, log-sum-exp, loss and gradient terms — is common/soft_encoded_cross_entropy.h.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <tuple>
#include <vector>

#include "common/soft_encoded_cross_entropy.h"
#include "cuda/helpers.h"
#include "host/soft_encoded_cross_entropy_grid.h"
#include "host/registration.h"

namespace perceptual_ext {
namespace {

namespace sece = soft_encoded_cross_entropy;

template <typename scalar_t>
__global__ void forward_kernel(const scalar_t* __restrict__ logits, const scalar_t* __restrict__ ab,
                               const scalar_t* __restrict__ bins, const scalar_t* __restrict__ weights, sece::Grid grid,
                               int64_t batch, int64_t classes, int64_t hw, int k, scalar_t sigma,
                               scalar_t* __restrict__ loss, scalar_t* __restrict__ lse) {
  PE_GRID_STRIDE_LOOP(i, batch * hw) {
    const int64_t n = i / hw, p = i % hw;
    const scalar_t* x = logits + n * classes * hw + p;
    sece::Target<scalar_t> t;
    sece::encode(grid, bins, weights, ab[n * 2 * hw + p], ab[(n * 2 + 1) * hw + p], k, sigma, t);
    const scalar_t m = sece::logsumexp(x, hw, classes);
    lse[i] = m;
    loss[i] = sece::pixel_loss(t.v, m, sece::target_logit(x, hw, t.nearest, t.z));
  }
}

template <typename scalar_t>
__global__ void backward_kernel(const scalar_t* __restrict__ grad, const scalar_t* __restrict__ logits,
                                const scalar_t* __restrict__ ab, const scalar_t* __restrict__ bins,
                                const scalar_t* __restrict__ weights, const scalar_t* __restrict__ lse, sece::Grid grid,
                                int64_t batch, int64_t classes, int64_t hw, int k, scalar_t sigma,
                                scalar_t* __restrict__ out) {
  PE_GRID_STRIDE_LOOP(i, batch * hw) {
    const int64_t n = i / hw, p = i % hw;
    const int64_t offset = n * classes * hw + p;
    sece::Target<scalar_t> t;
    sece::encode(grid, bins, weights, ab[n * 2 * hw + p], ab[(n * 2 + 1) * hw + p], k, sigma, t);
    const scalar_t scale = grad[i] * t.v, m = lse[i];
    for (int64_t q = 0; q < classes; ++q) out[offset + q * hw] = sece::softmax_grad(scale, logits[offset + q * hw], m);
    for (int j = 0; j < t.nearest.count; ++j)
      out[offset + static_cast<int64_t>(t.nearest.bin[j]) * hw] -= scale * t.z[j];
  }
}

std::tuple<at::Tensor, at::Tensor> forward_cuda(const at::Tensor& logits_in, const at::Tensor& ab_in,
                                                const at::Tensor& bins_in, const at::Tensor& weights_in,
                                                int64_t neighbors, double sigma) {
  const auto c = sece::forward_call(logits_in, ab_in, bins_in, weights_in, neighbors, sigma, {at::kFloat, at::kDouble});
  const c10::cuda::CUDAGuard guard(c.logits.device());
  if (c.loss.numel() == 0) return {c.loss, c.lse};
  AT_DISPATCH_FLOATING_TYPES(c.logits.scalar_type(), "soft_encoded_cross_entropy_cuda", [&] {
    cuda::launch(forward_kernel<scalar_t>, cuda::grid_size(c.n * c.hw), c.logits.data_ptr<scalar_t>(),
                 c.ab.data_ptr<scalar_t>(), c.bins.data_ptr<scalar_t>(), c.weights_data<scalar_t>(), c.grid.view(), c.n,
                 c.classes, c.hw, static_cast<int>(neighbors), static_cast<scalar_t>(sigma),
                 c.loss.data_ptr<scalar_t>(), c.lse.data_ptr<scalar_t>());
  });
  return {c.loss, c.lse};
}

at::Tensor backward_cuda(const at::Tensor& grad_in, const at::Tensor& logits_in, const at::Tensor& ab_in,
                         const at::Tensor& bins_in, const at::Tensor& weights_in, const at::Tensor& lse_in,
                         int64_t neighbors, double sigma) {
  const auto c = sece::backward_call(grad_in, logits_in, ab_in, bins_in, weights_in, lse_in, neighbors, sigma);
  const c10::cuda::CUDAGuard guard(c.logits.device());
  if (c.out.numel() == 0) return c.out;
  AT_DISPATCH_FLOATING_TYPES(c.logits.scalar_type(), "soft_encoded_cross_entropy_backward_cuda", [&] {
    cuda::launch(backward_kernel<scalar_t>, cuda::grid_size(c.n * c.hw), c.grad.data_ptr<scalar_t>(),
                 c.logits.data_ptr<scalar_t>(), c.ab.data_ptr<scalar_t>(), c.bins.data_ptr<scalar_t>(),
                 c.weights_data<scalar_t>(), c.lse.data_ptr<scalar_t>(), c.grid.view(), c.n, c.classes, c.hw,
                 static_cast<int>(neighbors), static_cast<scalar_t>(sigma), c.out.data_ptr<scalar_t>());
  });
  return c.out;
}

}  // namespace

TORCH_LIBRARY_IMPL(perceptual_ext, CUDA, m) {
  impl_with_backward(m, "soft_encoded_cross_entropy", &forward_cuda, &backward_cuda);
}

}  // namespace perceptual_ext
