// Template matching, CPU: a register-blocked direct correlation (several templates x several
// vectors of output columns per inner loop, at::vec FMAs) for small templates, the FFT path of
// common/match_template_plan.h for large ones, and per-row epilogue/partials over SAT statistics.
// at::vec picks its SIMD implementation from CPU_CAPABILITY_* macros, which ATen sets only for its
// own per-ISA builds: select the one this translation unit is compiled for (-march=native), or
// the portable generic one.
#if !defined(CPU_CAPABILITY) && defined(__AVX2__) && defined(__FMA__)
#define CPU_CAPABILITY AVX2
#define CPU_CAPABILITY_AVX2
#endif

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include <vector>

#include "common/checks.h"
#include "common/match_template.h"
#include "common/match_template_plan.h"

namespace perceptual_ext {
namespace {

using match::Method;

// One output row y of KB consecutive templates: out[o0 + kb, y, :] = sum_i corr(in[i], wt[o0 + kb, i]).
// U vectors of columns per step share each loaded image vector across the KB templates.
template <typename scalar_t, int KB, int U>
void direct_row(const scalar_t* in, const scalar_t* wt, scalar_t* out, int64_t channels, int64_t in_h, int64_t in_w,
                int64_t h, int64_t w, int64_t out_h, int64_t out_w, int64_t y) {
  using Vec = at::vec::Vectorized<scalar_t>;
  constexpr int64_t V = Vec::size();
  const int64_t templ_stride = channels * h * w;
  auto block = [&](int64_t x0, auto columns) {
    constexpr int64_t kU = decltype(columns)::value;
    Vec acc[KB][kU];
    for (int kb = 0; kb < KB; ++kb)
      for (int64_t u = 0; u < kU; ++u) acc[kb][u] = Vec(scalar_t(0));
    for (int64_t c = 0; c < channels; ++c) {
      for (int64_t i = 0; i < h; ++i) {
        const scalar_t* frow = in + (c * in_h + y + i) * in_w + x0;
        const scalar_t* grow = wt + (c * h + i) * w;
        for (int64_t j = 0; j < w; ++j) {
          Vec f[kU];
          for (int64_t u = 0; u < kU; ++u) f[u] = Vec::loadu(frow + j + u * V);
          for (int kb = 0; kb < KB; ++kb) {
            const Vec g(grow[kb * templ_stride + j]);
            for (int64_t u = 0; u < kU; ++u) acc[kb][u] = at::vec::fmadd(g, f[u], acc[kb][u]);
          }
        }
      }
    }
    for (int kb = 0; kb < KB; ++kb)
      for (int64_t u = 0; u < kU; ++u) acc[kb][u].store(out + (kb * out_h + y) * out_w + x0 + u * V);
  };
  int64_t x0 = 0;
  for (; x0 + U * V <= out_w; x0 += U * V) block(x0, std::integral_constant<int64_t, U>{});
  for (; x0 + V <= out_w; x0 += V) block(x0, std::integral_constant<int64_t, 1>{});
  // Columns left over: scalar, accumulated in the same order.
  for (; x0 < out_w; ++x0) {
    for (int kb = 0; kb < KB; ++kb) {
      scalar_t acc = 0;
      for (int64_t c = 0; c < channels; ++c)
        for (int64_t i = 0; i < h; ++i) {
          const scalar_t* frow = in + (c * in_h + y + i) * in_w + x0;
          const scalar_t* grow = wt + kb * templ_stride + (c * h + i) * w;
          for (int64_t j = 0; j < w; ++j) acc += grow[j] * frow[j];
        }
      out[(kb * out_h + y) * out_w + x0] = acc;
    }
  }
}

constexpr int kTemplBlock = 4;

at::Tensor direct_xcorr_cpu(const at::Tensor& input, const at::Tensor& weight) {
  const int64_t n = input.size(0), ci = input.size(1), in_h = input.size(2), in_w = input.size(3);
  const int64_t o = weight.size(0), h = weight.size(2), w = weight.size(3);
  const int64_t out_h = in_h - h + 1, out_w = in_w - w + 1;
  auto out = at::empty({n, o, out_h, out_w}, input.options());
  if (out.numel() == 0) return out;
  const int64_t templ_blocks = (o + kTemplBlock - 1) / kTemplBlock;
  const int64_t tasks = n * templ_blocks * out_h;
  // ~32k multiply-adds per task at least, so that scheduling stays negligible.
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, kTemplBlock * ci * h * w * out_w));
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "match_template_direct_cpu", [&] {
    const scalar_t* in = input.data_ptr<scalar_t>();
    const scalar_t* wt = weight.data_ptr<scalar_t>();
    scalar_t* res = out.data_ptr<scalar_t>();
    at::parallel_for(0, tasks, grain, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        const int64_t y = t % out_h;
        const int64_t b = (t / out_h) % templ_blocks;
        const int64_t nn = t / (out_h * templ_blocks);
        const int64_t o0 = b * kTemplBlock;
        const scalar_t* in_n = in + nn * ci * in_h * in_w;
        const scalar_t* wt_b = wt + o0 * ci * h * w;
        scalar_t* out_b = res + (nn * o + o0) * out_h * out_w;
        if (o - o0 >= kTemplBlock) {
          direct_row<scalar_t, kTemplBlock, 2>(in_n, wt_b, out_b, ci, in_h, in_w, h, w, out_h, out_w, y);
        } else {
          for (int64_t oo = o0; oo < o; ++oo)
            direct_row<scalar_t, 1, 4>(in_n, wt + oo * ci * h * w, res + (nn * o + oo) * out_h * out_w, ci, in_h,
                                       in_w, h, w, out_h, out_w, y);
        }
      }
    });
  });
  return out;
}

// Window statistics of a whole output row (n, y): S1_c per column into s1[c * out_w + x] and
// the WindowStats of every column, in loops over x that the compiler vectorizes.
struct RowStatistics {
  const double* sat1;  // [N, C, H+1, W+1] or nullptr
  const double* sat2;  // [N, 1, H+1, W+1] or nullptr
  int64_t channels, stride, plane, h, w, out_w;

  void row(int64_t n, int64_t y, double* s1, double* sum_sq, double* sum_tol, match::WindowStats* out) const {
    const double inv_m = 1.0 / static_cast<double>(h * w);
    std::fill(sum_sq, sum_sq + out_w, 0.0);
    std::fill(sum_tol, sum_tol + out_w, 0.0);
    if (sat1 != nullptr) {
      for (int64_t c = 0; c < channels; ++c) {
        const double* t = sat1 + (n * channels + c) * plane;
        double* s = s1 + c * out_w;
        for (int64_t x = 0; x < out_w; ++x) {
          s[x] = match::box_sum(t, stride, y, x, h, w);
          match::WindowAccumulator acc{sum_sq[x], sum_tol[x]};
          acc.add_channel(s[x], match::box_magnitude(t, stride, y, x, h, w), inv_m);
          sum_sq[x] = acc.sum_sq_over_m;
          sum_tol[x] = acc.sum_tol;
        }
      }
    }
    const double* t = sat2 != nullptr ? sat2 + n * plane : nullptr;
    for (int64_t x = 0; x < out_w; ++x) {
      const match::WindowAccumulator acc{sum_sq[x], sum_tol[x]};
      out[x] = t != nullptr ? acc.finish(match::box_sum(t, stride, y, x, h, w), match::box_magnitude(t, stride, y, x, h, w))
                            : acc.finish(0.0, 0.0);
    }
  }
};

// Per-task scratch for one output row.
struct RowScratch {
  std::vector<double> s1, sum_sq, sum_tol;
  std::vector<match::WindowStats> stats;
  RowScratch(int64_t channels, int64_t out_w)
      : s1(std::max<int64_t>(channels, 1) * out_w), sum_sq(out_w), sum_tol(out_w), stats(out_w) {}
  void fill(const RowStatistics& r, int64_t n, int64_t y) {
    r.row(n, y, s1.data(), sum_sq.data(), sum_tol.data(), stats.data());
  }
};

RowStatistics row_statistics(const at::Tensor& sat1, const at::Tensor& sat2, int64_t channels, int64_t h, int64_t w,
                             int64_t out_w) {
  const at::Tensor& any = sat1.defined() ? sat1 : sat2;
  RowStatistics r{sat1.defined() ? sat1.data_ptr<double>() : nullptr, sat2.defined() ? sat2.data_ptr<double>() : nullptr,
                  channels, 0, 0, h, w, out_w};
  if (any.defined()) {
    r.stride = any.size(3);
    r.plane = any.size(2) * any.size(3);
  }
  return r;
}

std::vector<match::TemplateStats> template_stats(const at::Tensor& stats) {
  const auto s = stats.contiguous();
  const double* p = s.data_ptr<double>();
  std::vector<match::TemplateStats> out;
  for (int64_t k = 0; k < s.size(0); ++k) out.push_back(match::template_stats(p[2 * k], p[2 * k + 1]));
  return out;
}

// The method's cross term X = X' + sum_c rho_c S1_c (s1 strided by out_w).
inline double restored_cross(double x, const double* rho_k, const double* s1, int64_t s1_stride, int64_t channels,
                             bool centred) {
  if (!centred) return x;
  for (int64_t c = 0; c < channels; ++c) x += rho_k[c] * s1[c * s1_stride];
  return x;
}

void epilogue_cpu(at::Tensor& cross, const at::Tensor& sat1, const at::Tensor& sat2, const at::Tensor& templ_stats,
                  const at::Tensor& rho, Method method, int64_t h, int64_t w) {
  if (method == Method::kCorr) return;
  const int64_t n = cross.size(0), kk = cross.size(1), out_h = cross.size(2), out_w = cross.size(3);
  const int64_t channels = rho.size(1);
  const auto stats = row_statistics(sat1, sat2, channels, h, w, out_w);
  const auto tstats = template_stats(templ_stats);
  const auto rho_c = rho.contiguous();
  const double* rho_p = rho_c.data_ptr<double>();
  const bool centred = sat1.defined();  // restore X from X' (rho is zero where nothing to restore)
  AT_DISPATCH_FLOATING_TYPES(cross.scalar_type(), "match_template_epilogue_cpu", [&] {
    scalar_t* out = cross.data_ptr<scalar_t>();
    at::parallel_for(0, n * out_h, 4, [&](int64_t begin, int64_t end) {
      RowScratch scratch(channels, out_w);
      for (int64_t r = begin; r < end; ++r) {
        const int64_t nn = r / out_h, y = r % out_h;
        scratch.fill(stats, nn, y);
        for (int64_t k = 0; k < kk; ++k) {
          scalar_t* v = out + ((nn * kk + k) * out_h + y) * out_w;
          const double* rho_k = rho_p + k * channels;
          const match::TemplateStats g = tstats[k];
          for (int64_t x = 0; x < out_w; ++x) {
            const double xc =
                restored_cross(static_cast<double>(v[x]), rho_k, scratch.s1.data() + x, out_w, channels, centred);
            v[x] = static_cast<scalar_t>(match::score(method, xc, scratch.stats[x], g));
          }
        }
      }
    });
  });
}

at::Tensor partials_cpu(const at::Tensor& grad, const at::Tensor& cross, const at::Tensor& sat1, const at::Tensor& sat2,
                        const at::Tensor& templ_stats, const at::Tensor& rho, Method method, int64_t h, int64_t w,
                        at::Tensor& d_cross, at::Tensor& d_window) {
  const int64_t n = cross.size(0), kk = cross.size(1), out_h = cross.size(2), out_w = cross.size(3);
  const int64_t channels = rho.size(1);
  const auto stats = row_statistics(sat1, sat2, channels, h, w, out_w);
  const auto tstats = template_stats(templ_stats);
  const auto rho_c = rho.contiguous();
  const double* rho_p = rho_c.data_ptr<double>();
  const bool centred = sat1.defined();  // restore X from X' (rho is zero where nothing to restore)
  auto d_templ_rows = at::zeros({n * out_h, kk}, cross.options().dtype(at::kDouble));
  double* dt = d_templ_rows.data_ptr<double>();
  double* dw = d_window.data_ptr<double>();
  AT_DISPATCH_FLOATING_TYPES(cross.scalar_type(), "match_template_partials_cpu", [&] {
    const scalar_t* x_p = cross.data_ptr<scalar_t>();
    const scalar_t* g_p = grad.data_ptr<scalar_t>();
    scalar_t* dx = d_cross.data_ptr<scalar_t>();
    at::parallel_for(0, n * out_h, 4, [&](int64_t begin, int64_t end) {
      RowScratch scratch(channels, out_w);
      for (int64_t r = begin; r < end; ++r) {
        const int64_t nn = r / out_h, y = r % out_h;
        scratch.fill(stats, nn, y);
        for (int64_t x = 0; x < out_w; ++x) {
          const auto& f = scratch.stats[x];
          double window = 0.0;
          for (int64_t k = 0; k < kk; ++k) {
            const int64_t i = ((nn * kk + k) * out_h + y) * out_w + x;
            const double xc = restored_cross(static_cast<double>(x_p[i]), rho_p + k * channels,
                                             scratch.s1.data() + x, out_w, channels, centred);
            const auto p = match::partials(method, xc, f, tstats[k]);
            const double g = static_cast<double>(g_p[i]);
            dx[i] = static_cast<scalar_t>(g * p.d_cross);
            window += g * p.d_window;
            dt[r * kk + k] += g * p.d_templ;
          }
          dw[(nn * out_h + y) * out_w + x] = window;
        }
      }
    });
  });
  return d_templ_rows;
}

// Summed-area tables in one sweep per plane (parallel over planes): sat1 of every channel, and
// sat2 of sum_c f_c^2 accumulated across channels row by row, in double.
void tables_cpu(const at::Tensor& image, Method method, at::Tensor& sat1, at::Tensor& sat2) {
  const int64_t n = image.size(0), c = image.size(1), in_h = image.size(2), in_w = image.size(3);
  const int64_t stride = in_w + 1, plane = (in_h + 1) * stride;
  const auto options = image.options().dtype(at::kDouble);
  const bool sums = match::needs_sum(method), energy = match::needs_energy(method);
  if (sums) sat1 = at::empty({n, c, in_h + 1, in_w + 1}, options);
  if (energy) sat2 = at::empty({n, 1, in_h + 1, in_w + 1}, options);
  if (!sums && !energy) return;
  AT_DISPATCH_FLOATING_TYPES(image.scalar_type(), "match_template_tables_cpu", [&] {
    const scalar_t* f = image.data_ptr<scalar_t>();
    double* t1 = sums ? sat1.data_ptr<double>() : nullptr;
    double* t2 = energy ? sat2.data_ptr<double>() : nullptr;
    at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
      std::vector<double> row_sq(in_w);
      for (int64_t nn = begin; nn < end; ++nn) {
        if (sums) {
          for (int64_t cc = 0; cc < c; ++cc) {
            double* t = t1 + (nn * c + cc) * plane;
            const scalar_t* src = f + (nn * c + cc) * in_h * in_w;
            std::fill(t, t + stride, 0.0);
            for (int64_t y = 0; y < in_h; ++y) {
              double run = 0.0;
              t[(y + 1) * stride] = 0.0;
              for (int64_t x = 0; x < in_w; ++x) {
                run += static_cast<double>(src[y * in_w + x]);
                t[(y + 1) * stride + x + 1] = t[y * stride + x + 1] + run;
              }
            }
          }
        }
        if (energy) {
          double* t = t2 + nn * plane;
          std::fill(t, t + stride, 0.0);
          for (int64_t y = 0; y < in_h; ++y) {
            std::fill(row_sq.begin(), row_sq.end(), 0.0);
            for (int64_t cc = 0; cc < c; ++cc) {
              const scalar_t* src = f + ((nn * c + cc) * in_h + y) * in_w;
              for (int64_t x = 0; x < in_w; ++x) {
                const double v = static_cast<double>(src[x]);
                row_sq[x] += v * v;
              }
            }
            double run = 0.0;
            t[(y + 1) * stride] = 0.0;
            for (int64_t x = 0; x < in_w; ++x) {
              run += row_sq[x];
              t[(y + 1) * stride + x + 1] = t[y * stride + x + 1] + run;
            }
          }
        }
      }
    });
  });
}

const match::DeviceKernels kCpuKernels{&direct_xcorr_cpu, &epilogue_cpu, &partials_cpu, &tables_cpu,
                                       at::vec::Vectorized<float>::size()};

at::Tensor match_template_cpu(const at::Tensor& image, const at::Tensor& templ, c10::string_view method) {
  match::check_inputs(image, templ, "match_template");
  return match::forward(image, templ, std::string(method), kCpuKernels);
}

std::tuple<at::Tensor, at::Tensor> match_template_backward_cpu(const at::Tensor& grad, const at::Tensor& image,
                                                               const at::Tensor& templ, c10::string_view method) {
  match::check_inputs(image, templ, "match_template_backward");
  return match::backward(grad, image, templ, std::string(method), kCpuKernels);
}

}  // namespace

TORCH_LIBRARY_IMPL(perceptual_ext, CPU, m) {
  m.impl("match_template", &match_template_cpu);
  m.impl("match_template_backward", &match_template_backward_cpu);
}

}  // namespace perceptual_ext
