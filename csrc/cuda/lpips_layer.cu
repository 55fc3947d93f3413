// LPIPS head, CUDA: one thread per pixel (consecutive threads read consecutive pixels of each
// channel plane, so every channel's load is coalesced), over the shared per-pixel maths of
// common/lpips_layer.h. Backward recomputes the norms and differences; nothing is saved.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <tuple>

#include "common/lpips_layer.h"
#include "cuda/helpers.h"
#include "host/lpips_layer.h"
#include "host/registration.h"

namespace perceptual_ext {
namespace {

namespace ll = lpips_layer;

template <typename scalar_t>
__global__ void forward_kernel(const scalar_t* __restrict__ a, const scalar_t* __restrict__ b,
                               const scalar_t* __restrict__ w, scalar_t* __restrict__ out, int64_t batch,
                               int64_t channels, int64_t pixels) {
  PE_GRID_STRIDE_LOOP(i, batch * pixels) {
    const int64_t n = i / pixels, p = i % pixels;
    const int64_t offset = n * channels * pixels + p;
    out[i] = ll::pixel_forward<scalar_t, scalar_t>(a + offset, b + offset, w, channels, pixels);
  }
}

template <typename scalar_t>
__global__ void backward_kernel(const scalar_t* __restrict__ grad, const scalar_t* __restrict__ a,
                                const scalar_t* __restrict__ b, const scalar_t* __restrict__ w,
                                scalar_t* __restrict__ da, scalar_t* __restrict__ db, int64_t batch, int64_t channels,
                                int64_t pixels) {
  PE_GRID_STRIDE_LOOP(i, batch * pixels) {
    const int64_t n = i / pixels, p = i % pixels;
    const int64_t offset = n * channels * pixels + p;
    ll::pixel_backward<scalar_t, scalar_t>(grad[i], a + offset, b + offset, w, channels, pixels,
                                           da ? da + offset : nullptr, db ? db + offset : nullptr);
  }
}

at::Tensor lpips_layer_cuda(const at::Tensor& a_in, const at::Tensor& b_in, const at::Tensor& weight_in) {
  const auto c = lpips_layer_forward_call(a_in, b_in, weight_in);
  const c10::cuda::CUDAGuard guard(c.a.device());
  if (c.out.numel() == 0) return c.out;
  const int64_t batch = c.a.size(0), channels = c.a.size(1), pixels = c.a.size(2) * c.a.size(3);
  AT_DISPATCH_FLOATING_TYPES(c.a.scalar_type(), "lpips_layer_cuda", [&] {
    cuda::launch(forward_kernel<scalar_t>, cuda::grid_size(c.out.numel()), c.a.const_data_ptr<scalar_t>(),
                 c.b.const_data_ptr<scalar_t>(), c.weight.const_data_ptr<scalar_t>(), c.out.data_ptr<scalar_t>(), batch,
                 channels, pixels);
  });
  return c.out;
}

std::tuple<at::Tensor, at::Tensor> lpips_layer_backward_cuda(const at::Tensor& grad_in, const at::Tensor& a_in,
                                                             const at::Tensor& b_in, const at::Tensor& weight_in,
                                                             bool need_a, bool need_b) {
  const auto c = lpips_layer_backward_call(grad_in, a_in, b_in, weight_in, need_a, need_b);
  const c10::cuda::CUDAGuard guard(c.a.device());
  if (!c.any_grad()) return {c.da, c.db};
  const int64_t batch = c.a.size(0), channels = c.a.size(1), pixels = c.a.size(2) * c.a.size(3);
  AT_DISPATCH_FLOATING_TYPES(c.a.scalar_type(), "lpips_layer_backward_cuda", [&] {
    cuda::launch(backward_kernel<scalar_t>, cuda::grid_size(batch * pixels), c.grad.const_data_ptr<scalar_t>(),
                 c.a.const_data_ptr<scalar_t>(), c.b.const_data_ptr<scalar_t>(), c.weight.const_data_ptr<scalar_t>(),
                 need_a ? c.da.data_ptr<scalar_t>() : nullptr, need_b ? c.db.data_ptr<scalar_t>() : nullptr, batch,
                 channels, pixels);
  });
  return {c.da, c.db};
}

}  // namespace

TORCH_LIBRARY_IMPL(perceptual_ext, CUDA, m) {
  impl_with_backward(m, "lpips_layer", &lpips_layer_cuda, &lpips_layer_backward_cuda);
}

}  // namespace perceptual_ext
