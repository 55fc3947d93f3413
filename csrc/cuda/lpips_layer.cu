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
  check_lpips_layer_inputs(a_in, b_in, weight_in, "lpips_layer");
  const c10::cuda::CUDAGuard guard(a_in.device());
  const at::Tensor a = a_in.contiguous(), b = b_in.contiguous(), weight = weight_in.contiguous();
  const int64_t batch = a.size(0), channels = a.size(1), pixels = a.size(2) * a.size(3);
  auto out = at::empty({batch, 1, a.size(2), a.size(3)}, a.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "lpips_layer_cuda", [&] {
    cuda::launch(forward_kernel<scalar_t>, cuda::grid_size(out.numel()), a.const_data_ptr<scalar_t>(),
                 b.const_data_ptr<scalar_t>(), weight.const_data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), batch,
                 channels, pixels);
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> lpips_layer_backward_cuda(const at::Tensor& grad_in, const at::Tensor& a_in,
                                                             const at::Tensor& b_in, const at::Tensor& weight_in,
                                                             bool need_a, bool need_b) {
  check_lpips_layer_inputs(a_in, b_in, weight_in, "lpips_layer_backward");
  check_lpips_layer_grad(grad_in, a_in, "lpips_layer_backward");
  const c10::cuda::CUDAGuard guard(a_in.device());
  const at::Tensor grad = grad_in.contiguous(), a = a_in.contiguous(), b = b_in.contiguous(),
                   weight = weight_in.contiguous();
  at::Tensor da = need_a ? at::empty(a.sizes(), a.options()) : at::empty({0}, a.options());
  at::Tensor db = need_b ? at::empty(b.sizes(), b.options()) : at::empty({0}, b.options());
  if ((!need_a && !need_b) || a.numel() == 0) return {da, db};
  const int64_t batch = a.size(0), channels = a.size(1), pixels = a.size(2) * a.size(3);
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "lpips_layer_backward_cuda", [&] {
    cuda::launch(backward_kernel<scalar_t>, cuda::grid_size(batch * pixels), grad.const_data_ptr<scalar_t>(),
                 a.const_data_ptr<scalar_t>(), b.const_data_ptr<scalar_t>(), weight.const_data_ptr<scalar_t>(),
                 need_a ? da.data_ptr<scalar_t>() : nullptr, need_b ? db.data_ptr<scalar_t>() : nullptr, batch,
                 channels, pixels);
  });
  return {da, db};
}

}  // namespace

TORCH_LIBRARY_IMPL(perceptual_ext, CUDA, m) {
  impl_with_backward(m, "lpips_layer", &lpips_layer_cuda, &lpips_layer_backward_cuda);
}

}  // namespace perceptual_ext
