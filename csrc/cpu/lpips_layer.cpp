// LPIPS head, CPU: blocks of kBlock pixels of one image; for each block the channel loop runs
// outside and the pixel loop inside (contiguous in NCHW, so it vectorizes), over the element
// functions of common/lpips_layer.h. A block's a and b ([C, kBlock], 256 KiB at C = 512 in
// float32) stay in L2 between the passes, so a and b are read from memory about once. Backward
// recomputes the norms and the differences: nothing is saved but the inputs.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>

#include "common/lpips_layer.h"
#include "host/lpips_layer.h"
#include "host/registration.h"

namespace perceptual_ext {
namespace {

namespace ll = lpips_layer;

constexpr int64_t kBlock = 64;

struct Geometry {
  int64_t batch, channels, pixels, blocks;
};

Geometry geometry_of(const at::Tensor& a) {
  const int64_t pixels = a.size(2) * a.size(3);
  return {a.size(0), a.size(1), pixels, (pixels + kBlock - 1) / kBlock};
}

// sum_c x_c^2 and sum_c y_c^2 of `count` pixels, channels `stride` apart.
template <typename scalar_t>
void sums_of_squares(const scalar_t* a, const scalar_t* b, int64_t channels, int64_t stride, int64_t count,
                     scalar_t* sa, scalar_t* sb) {
  std::fill(sa, sa + count, scalar_t(0));
  std::fill(sb, sb + count, scalar_t(0));
  for (int64_t c = 0; c < channels; ++c) {
    const scalar_t* x = a + c * stride;
    const scalar_t* y = b + c * stride;
    for (int64_t t = 0; t < count; ++t) {
      sa[t] += x[t] * x[t];
      sb[t] += y[t] * y[t];
    }
  }
}

template <typename scalar_t>
void forward_block(const scalar_t* a, const scalar_t* b, const scalar_t* w, int64_t channels, int64_t stride,
                   int64_t count, scalar_t* out) {
  scalar_t ia[kBlock], ib[kBlock], acc[kBlock];
  sums_of_squares(a, b, channels, stride, count, ia, ib);
  for (int64_t t = 0; t < count; ++t) {
    ia[t] = ll::inv_norm<scalar_t>(std::sqrt(ia[t]));
    ib[t] = ll::inv_norm<scalar_t>(std::sqrt(ib[t]));
    acc[t] = 0;
  }
  for (int64_t c = 0; c < channels; ++c) {
    const scalar_t* x = a + c * stride;
    const scalar_t* y = b + c * stride;
    const scalar_t wc = w[c];
    for (int64_t t = 0; t < count; ++t)
      acc[t] += ll::term<scalar_t>(wc, ll::unit_diff<scalar_t>(x[t], y[t], ia[t], ib[t]));
  }
  std::copy(acc, acc + count, out);
}

template <typename scalar_t>
void backward_block(const scalar_t* g, const scalar_t* a, const scalar_t* b, const scalar_t* w, int64_t channels,
                    int64_t stride, int64_t count, scalar_t* da, scalar_t* db) {
  scalar_t na[kBlock], nb[kBlock], ia[kBlock], ib[kBlock], ua[kBlock], ub[kBlock];
  sums_of_squares(a, b, channels, stride, count, na, nb);
  for (int64_t t = 0; t < count; ++t) {
    na[t] = std::sqrt(na[t]);
    nb[t] = std::sqrt(nb[t]);
    ia[t] = ll::inv_norm<scalar_t>(na[t]);
    ib[t] = ll::inv_norm<scalar_t>(nb[t]);
    ua[t] = ub[t] = 0;
  }
  for (int64_t c = 0; c < channels; ++c) {
    const scalar_t* x = a + c * stride;
    const scalar_t* y = b + c * stride;
    const scalar_t wc = w[c];
    for (int64_t t = 0; t < count; ++t) {
      const scalar_t u = ll::unit_grad<scalar_t>(g[t], wc, ll::unit_diff<scalar_t>(x[t], y[t], ia[t], ib[t]));
      ua[t] += u * x[t];
      ub[t] += u * y[t];
    }
  }
  for (int64_t t = 0; t < count; ++t) {
    ua[t] = ll::radial<scalar_t>(ua[t], na[t], ia[t]);
    ub[t] = ll::radial<scalar_t>(ub[t], nb[t], ib[t]);
  }
  for (int64_t c = 0; c < channels; ++c) {
    const scalar_t* x = a + c * stride;
    const scalar_t* y = b + c * stride;
    const scalar_t wc = w[c];
    scalar_t* dx = da ? da + c * stride : nullptr;
    scalar_t* dy = db ? db + c * stride : nullptr;
    if (dx && dy) {
      for (int64_t t = 0; t < count; ++t) {
        const scalar_t u = ll::unit_grad<scalar_t>(g[t], wc, ll::unit_diff<scalar_t>(x[t], y[t], ia[t], ib[t]));
        dx[t] = ll::input_grad<scalar_t>(u, x[t], ia[t], ua[t]);
        dy[t] = -ll::input_grad<scalar_t>(u, y[t], ib[t], ub[t]);
      }
    } else if (dx) {
      for (int64_t t = 0; t < count; ++t) {
        const scalar_t u = ll::unit_grad<scalar_t>(g[t], wc, ll::unit_diff<scalar_t>(x[t], y[t], ia[t], ib[t]));
        dx[t] = ll::input_grad<scalar_t>(u, x[t], ia[t], ua[t]);
      }
    } else if (dy) {
      for (int64_t t = 0; t < count; ++t) {
        const scalar_t u = ll::unit_grad<scalar_t>(g[t], wc, ll::unit_diff<scalar_t>(x[t], y[t], ia[t], ib[t]));
        dy[t] = -ll::input_grad<scalar_t>(u, y[t], ib[t], ub[t]);
      }
    }
  }
}

// Calls fn(image, first pixel, pixel count) for every block, in parallel.
template <typename Fn>
void for_each_block(const Geometry& geo, Fn fn) {
  // A block of C = 64 channels is ~16k multiply-adds: a few blocks per task are enough.
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(geo.channels, 1));
  at::parallel_for(0, geo.batch * geo.blocks, grain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t n = i / geo.blocks, p0 = (i % geo.blocks) * kBlock;
      fn(n, p0, std::min(kBlock, geo.pixels - p0));
    }
  });
}

at::Tensor lpips_layer_cpu(const at::Tensor& a_in, const at::Tensor& b_in, const at::Tensor& weight_in) {
  const auto c = lpips_layer_forward_call(a_in, b_in, weight_in);
  if (c.out.numel() == 0) return c.out;
  const Geometry geo = geometry_of(c.a);
  AT_DISPATCH_FLOATING_TYPES(c.a.scalar_type(), "lpips_layer_cpu", [&] {
    const scalar_t* pa = c.a.const_data_ptr<scalar_t>();
    const scalar_t* pb = c.b.const_data_ptr<scalar_t>();
    const scalar_t* pw = c.weight.const_data_ptr<scalar_t>();
    scalar_t* po = c.out.data_ptr<scalar_t>();
    const int64_t image = geo.channels * geo.pixels;
    for_each_block(geo, [&](int64_t n, int64_t p0, int64_t count) {
      forward_block(pa + n * image + p0, pb + n * image + p0, pw, geo.channels, geo.pixels, count,
                    po + n * geo.pixels + p0);
    });
  });
  return c.out;
}

std::tuple<at::Tensor, at::Tensor> lpips_layer_backward_cpu(const at::Tensor& grad_in, const at::Tensor& a_in,
                                                            const at::Tensor& b_in, const at::Tensor& weight_in,
                                                            bool need_a, bool need_b) {
  const auto c = lpips_layer_backward_call(grad_in, a_in, b_in, weight_in, need_a, need_b);
  if (!c.any_grad()) return {c.da, c.db};
  const Geometry geo = geometry_of(c.a);
  AT_DISPATCH_FLOATING_TYPES(c.a.scalar_type(), "lpips_layer_backward_cpu", [&] {
    const scalar_t* pg = c.grad.const_data_ptr<scalar_t>();
    const scalar_t* pa = c.a.const_data_ptr<scalar_t>();
    const scalar_t* pb = c.b.const_data_ptr<scalar_t>();
    const scalar_t* pw = c.weight.const_data_ptr<scalar_t>();
    scalar_t* pda = need_a ? c.da.data_ptr<scalar_t>() : nullptr;
    scalar_t* pdb = need_b ? c.db.data_ptr<scalar_t>() : nullptr;
    const int64_t image = geo.channels * geo.pixels;
    for_each_block(geo, [&](int64_t n, int64_t p0, int64_t count) {
      const int64_t offset = n * image + p0;
      backward_block(pg + n * geo.pixels + p0, pa + offset, pb + offset, pw, geo.channels, geo.pixels, count,
                     pda ? pda + offset : nullptr, pdb ? pdb + offset : nullptr);
    });
  });
  return {c.da, c.db};
}

}  // namespace

TORCH_LIBRARY_IMPL(perceptual_ext, CPU, m) {
  impl_with_backward(m, "lpips_layer", &lpips_layer_cpu, &lpips_layer_backward_cpu);
}

}  // namespace perceptual_ext
