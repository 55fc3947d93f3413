// Template matching, CUDA: one thread per output element for the direct cross term, one per
// window for the epilogue, and one per output row for the backward partials (grid-stride loops
// from cuda/helpers.h, current stream). The
// statistics' tables, the FFT path and the backward assembly are the ATen compositions of
// host/match_template_plan.h; the arithmetic is common/match_template.h.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "host/checks.h"
#include "common/match_template.h"
#include "cuda/helpers.h"
#include "host/match_template_plan.h"
#include "host/registration.h"

namespace perceptual_ext {
namespace {

using match::Method;

using cuda::grid_size;
using cuda::kThreads;

template <typename scalar_t>
__global__ void direct_xcorr_kernel(const scalar_t* __restrict__ in, const scalar_t* __restrict__ wt,
                                    scalar_t* __restrict__ out, int64_t n, int64_t ci, int64_t in_h, int64_t in_w,
                                    int64_t o, int64_t h, int64_t w, int64_t out_h, int64_t out_w) {
  const int64_t total = n * o * out_h * out_w;
  PE_GRID_STRIDE_LOOP(idx, total) {
    const int64_t x = idx % out_w;
    const int64_t y = (idx / out_w) % out_h;
    const int64_t oo = (idx / (out_w * out_h)) % o;
    const int64_t nn = idx / (out_w * out_h * o);
    scalar_t acc = 0;
    for (int64_t c = 0; c < ci; ++c) {
      const scalar_t* f = in + ((nn * ci + c) * in_h + y) * in_w + x;
      const scalar_t* g = wt + (oo * ci + c) * h * w;
      for (int64_t i = 0; i < h; ++i)
        for (int64_t j = 0; j < w; ++j) acc += g[i * w + j] * f[i * in_w + j];
    }
    out[idx] = acc;
  }
}

using match::WindowTables;

template <typename scalar_t>
__global__ void epilogue_kernel(scalar_t* __restrict__ cross, WindowTables tables, const double* __restrict__ tstats,
                                const double* __restrict__ rho, Method method, int64_t n, int64_t kk, int64_t out_h,
                                int64_t out_w) {
  const int64_t total = n * out_h * out_w;
  PE_GRID_STRIDE_LOOP(idx, total) {
    const int64_t x = idx % out_w;
    const int64_t y = (idx / out_w) % out_h;
    const int64_t nn = idx / (out_w * out_h);
    const auto f = tables.stats(nn, y, x);
    for (int64_t k = 0; k < kk; ++k) {
      scalar_t& v = cross[((nn * kk + k) * out_h + y) * out_w + x];
      const double xc = tables.restored_cross(static_cast<double>(v), rho + k * tables.channels, nn, y, x);
      v = static_cast<scalar_t>(match::score(method, xc, f, match::template_stats(tstats[2 * k], tstats[2 * k + 1])));
    }
  }
}

// One block per output row (n, y), its threads over the row's windows, one template at a time:
// d_templ of the row is the block's sum (a fixed tree in shared memory, no atomics) into
// d_templ[n * Ho + y, k] -- [N Ho, K] float64 like the CPU's, not one row per window. The window
// statistics are recomputed per template (a few table reads) rather than stored.
template <typename scalar_t>
__global__ void partials_kernel(const scalar_t* __restrict__ grad, const scalar_t* __restrict__ cross,
                                WindowTables tables, const double* __restrict__ tstats, const double* __restrict__ rho,
                                Method method, int64_t n, int64_t kk, int64_t out_h, int64_t out_w,
                                scalar_t* __restrict__ d_cross, double* __restrict__ d_window,
                                double* __restrict__ d_templ) {
  __shared__ double partial[kThreads];
  for (int64_t r = blockIdx.x; r < n * out_h; r += gridDim.x) {
    const int64_t nn = r / out_h, y = r % out_h;
    for (int64_t k = 0; k < kk; ++k) {
      const auto g_stats = match::template_stats(tstats[2 * k], tstats[2 * k + 1]);
      double local = 0.0;
      for (int64_t x = threadIdx.x; x < out_w; x += blockDim.x) {
        const int64_t i = ((nn * kk + k) * out_h + y) * out_w + x;
        const double xc = tables.restored_cross(static_cast<double>(cross[i]), rho + k * tables.channels, nn, y, x);
        const auto p = match::partials(method, xc, tables.stats(nn, y, x), g_stats);
        const double g = static_cast<double>(grad[i]);
        d_cross[i] = static_cast<scalar_t>(g * p.d_cross);
        double& window = d_window[r * out_w + x];  // this thread's window for every k
        window = k == 0 ? g * p.d_window : window + g * p.d_window;
        local += g * p.d_templ;
      }
      const double row = cuda::block_sum(local, partial);
      if (threadIdx.x == 0) d_templ[r * kk + k] = row;
    }
  }
}

void direct_xcorr_cuda(const at::Tensor& input, const at::Tensor& weight, at::Tensor& out) {
  const int64_t n = input.size(0), ci = input.size(1), in_h = input.size(2), in_w = input.size(3);
  const int64_t o = weight.size(0), h = weight.size(2), w = weight.size(3);
  const int64_t out_h = out.size(2), out_w = out.size(3);
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "match_template_direct_cuda", [&] {
    cuda::launch(direct_xcorr_kernel<scalar_t>, grid_size(out.numel()), input.data_ptr<scalar_t>(),
                 weight.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), n, ci, in_h, in_w, o, h, w, out_h, out_w);
  });
}

void epilogue_cuda(at::Tensor& cross, const at::Tensor& image, const at::Tensor& templ_stats, const at::Tensor& rho,
                   Method method, int64_t h, int64_t w) {
  if (method == Method::kCorr) return;
  const int64_t n = cross.size(0), kk = cross.size(1), out_h = cross.size(2), out_w = cross.size(3);
  at::Tensor sat1, sat2;
  match::window_tables_composed(image, method, sat1, sat2);
  const auto tables = match::window_tables_view(sat1, sat2, rho.size(1), h, w);
  const auto tstats = templ_stats.contiguous();
  const auto rho_c = rho.contiguous();
  AT_DISPATCH_FLOATING_TYPES(cross.scalar_type(), "match_template_epilogue_cuda", [&] {
    cuda::launch(epilogue_kernel<scalar_t>, grid_size(n * out_h * out_w), cross.data_ptr<scalar_t>(), tables,
                 tstats.data_ptr<double>(), rho_c.data_ptr<double>(), method, n, kk, out_h, out_w);
  });
}

at::Tensor partials_cuda(const at::Tensor& grad, const at::Tensor& cross, const at::Tensor& sat1,
                         const at::Tensor& sat2, const at::Tensor& templ_stats, const at::Tensor& rho, Method method,
                         int64_t h, int64_t w, at::Tensor& d_cross, at::Tensor& d_window) {
  const int64_t n = cross.size(0), kk = cross.size(1), out_h = cross.size(2), out_w = cross.size(3);
  const auto tables = match::window_tables_view(sat1, sat2, rho.size(1), h, w);
  const auto tstats = templ_stats.contiguous();
  const auto rho_c = rho.contiguous();
  auto d_templ = at::empty({n * out_h, kk}, cross.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(cross.scalar_type(), "match_template_partials_cuda", [&] {
    cuda::launch(partials_kernel<scalar_t>, cuda::blocks_for_items(n * out_h), grad.data_ptr<scalar_t>(),
                 cross.data_ptr<scalar_t>(), tables, tstats.data_ptr<double>(), rho_c.data_ptr<double>(), method, n, kk,
                 out_h, out_w, d_cross.data_ptr<scalar_t>(), d_window.data_ptr<double>(), d_templ.data_ptr<double>());
  });
  return d_templ;
}

// One thread per output column: no vector lanes wasted on narrow outputs (lanes = 1).
const match::DeviceKernels kCudaKernels{&direct_xcorr_cuda, &epilogue_cuda, &partials_cuda,
                                        &match::window_tables_composed, 1};

at::Tensor match_template_cuda(const at::Tensor& image, const at::Tensor& templ, c10::string_view method) {
  match::check_inputs(image, templ, "match_template");
  const c10::cuda::CUDAGuard guard(image.device());
  return match::forward(image, templ, std::string(method), kCudaKernels);
}

std::tuple<at::Tensor, at::Tensor> match_template_backward_cuda(const at::Tensor& grad, const at::Tensor& image,
                                                                const at::Tensor& templ, c10::string_view method) {
  match::check_inputs(image, templ, "match_template_backward");
  const c10::cuda::CUDAGuard guard(image.device());
  return match::backward(grad, image, templ, std::string(method), kCudaKernels);
}

}  // namespace

TORCH_LIBRARY_IMPL(perceptual_ext, CUDA, m) {
  impl_with_backward(m, "match_template", &match_template_cuda, &match_template_backward_cuda);
}

}  // namespace perceptual_ext
