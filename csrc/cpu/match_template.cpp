// Template matching, CPU: a register-blocked direct correlation (several templates x several
// vectors of output columns per inner loop, at::vec FMAs) for small templates, the FFT path of
// host/match_template_plan.h for large ones; the forward epilogue accumulates the window
// statistics strip by strip (no stored tables), the backward partials read whole-image tables.

#include "cpu/simd.h"  // before any ATen header

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include <vector>

#include "host/checks.h"
#include "common/match_template.h"
#include "host/match_template_plan.h"
#include "host/registration.h"

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
  // Columns left over: one more vector ending at the last column, overlapping columns already
  // done (recomputed in the same order, so the same values); scalar only in rows narrower than it.
  if (x0 < out_w && out_w >= V) {
    block(out_w - V, std::integral_constant<int64_t, 1>{});
    x0 = out_w;
  }
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

void direct_xcorr_cpu(const at::Tensor& input, const at::Tensor& weight, at::Tensor& out) {
  const int64_t n = input.size(0), ci = input.size(1), in_h = input.size(2), in_w = input.size(3);
  const int64_t o = weight.size(0), h = weight.size(2), w = weight.size(3);
  const int64_t out_h = out.size(2), out_w = out.size(3);
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
            direct_row<scalar_t, 1, 4>(in_n, wt + oo * ci * h * w, res + (nn * o + oo) * out_h * out_w, ci, in_h, in_w,
                                       h, w, out_h, out_w, y);
        }
      }
    });
  });
}

// Loops over the windows of one output row. Free functions with restrict-qualified parameters
// (GCC ignores restrict on locals): the tables and the row arrays never alias, so they vectorize.
void add_channel_row(const match::BoxRow box, double inv_m, int64_t out_w, double* __restrict s1,
                     double* __restrict sum_sq, double* __restrict sum_tol) {
  for (int64_t x = 0; x < out_w; ++x) {
    s1[x] = box.sum(x);
    match::WindowAccumulator acc{sum_sq[x], sum_tol[x]};
    acc.add_channel(s1[x], box.magnitude(x), inv_m);
    sum_sq[x] = acc.sum_sq_over_m;
    sum_tol[x] = acc.sum_tol;
  }
}

// Finishes the row's statistics with S2 from the energy table `box` (or S2 = 0 without one).
template <bool with_energy>
void finish_row(const match::BoxRow box, int64_t out_w, const double* __restrict sum_sq,
                const double* __restrict sum_tol, double* __restrict energy, double* __restrict variance,
                double* __restrict energy_tol, double* __restrict var_tol) {
  for (int64_t x = 0; x < out_w; ++x) {
    const match::WindowAccumulator acc{sum_sq[x], sum_tol[x]};
    const auto f = with_energy ? acc.finish(box.sum(x), box.magnitude(x)) : acc.finish(0.0, 0.0);
    energy[x] = f.energy;
    variance[x] = f.variance;
    energy_tol[x] = f.energy_tol;
    var_tol[x] = f.var_tol;
  }
}

// Window statistics of a block of an output row as arrays over x (WindowTables::stats computed
// channel by channel), from the boxes of that block in each channel's table and in the energy table.
struct StatisticsRow {
  int64_t width;           // columns per block
  std::vector<double> s1;  // S1_c at [c * width + x] (when the method needs it)
  std::vector<double> sum_sq, sum_tol, energy, variance, energy_tol, var_tol;

  StatisticsRow(int64_t channels, int64_t width)
      : width(width),
        s1(channels * width),
        sum_sq(width),
        sum_tol(width),
        energy(width),
        variance(width),
        energy_tol(width),
        var_tol(width) {}

  // The first `count` (<= width) windows. channel_boxes: `channels` boxes, or nullptr; energy_box:
  // nullptr where S2 is not needed.
  void fill(const match::BoxRow* channel_boxes, int64_t channels, const match::BoxRow* energy_box, double inv_m,
            int64_t count) {
    std::fill(sum_sq.begin(), sum_sq.begin() + count, 0.0);
    std::fill(sum_tol.begin(), sum_tol.begin() + count, 0.0);
    if (channel_boxes != nullptr) {
      for (int64_t c = 0; c < channels; ++c)
        add_channel_row(channel_boxes[c], inv_m, count, s1.data() + c * width, sum_sq.data(), sum_tol.data());
    }
    if (energy_box != nullptr) {
      finish_row<true>(*energy_box, count, sum_sq.data(), sum_tol.data(), energy.data(), variance.data(),
                       energy_tol.data(), var_tol.data());
    } else {
      finish_row<false>(match::BoxRow{}, count, sum_sq.data(), sum_tol.data(), energy.data(), variance.data(),
                        energy_tol.data(), var_tol.data());
    }
  }
};

std::vector<match::TemplateStats> template_stats(const at::Tensor& stats) {
  const auto s = stats.contiguous();
  const double* p = s.data_ptr<double>();
  std::vector<match::TemplateStats> out;
  for (int64_t k = 0; k < s.size(0); ++k) out.push_back(match::template_stats(p[2 * k], p[2 * k + 1]));
  return out;
}

// dst[x] += src[x] (restrict parameters: vectorized).
void add_row(const double* __restrict src, double* __restrict dst, int64_t count) {
  for (int64_t x = 0; x < count; ++x) dst[x] += src[x];
}

// t[x] = (t[x] + carry) + above[x], or t[x] + carry without a row above.
template <bool with_above>
void carry_row(double* __restrict t, const double* __restrict above, double carry, int64_t count) {
  for (int64_t x = 0; x < count; ++x) t[x] = with_above ? (t[x] + carry) + above[x] : t[x] + carry;
}

// A running sum is one chain of dependent additions, bound by the adder's latency (~3 cycles a
// value); a row is scanned as this many runs at once, each from zero, and each run's
// predecessors' total is added afterwards in a vectorized pass.
constexpr int kScanRuns = 8;

// Prefix sums t[0] = 0, t[x + 1] = v[0] + ... + v[x] of a row of `count` values, plus the table
// row `above` when given (t[x] += above[x]: one row of a summed-area table).
template <bool with_above>
void prefix_sums(const double* __restrict v, int64_t count, const double* __restrict above, double* __restrict t) {
  const int64_t run = count / kScanRuns;
  double total[kScanRuns] = {};
  for (int64_t i = 0; i < run; ++i) {
    for (int r = 0; r < kScanRuns; ++r) {
      total[r] += v[r * run + i];
      t[r * run + i + 1] = total[r];
    }
  }
  for (int64_t x = kScanRuns * run; x < count; ++x) {  // the remainder extends the last run
    total[kScanRuns - 1] += v[x];
    t[x + 1] = total[kScanRuns - 1];
  }
  t[0] = with_above ? above[0] : 0.0;
  double carry = 0.0;
  for (int r = 0; r < kScanRuns; ++r) {
    const int64_t begin = r * run + 1, end = r == kScanRuns - 1 ? count + 1 : begin + run;
    carry_row<with_above>(t + begin, with_above ? above + begin : nullptr, carry, end - begin);
    carry += total[r];
  }
}

// What row y of a table sums -- channel c of `image_n` ([C, H, W]), or sum_c f_c^2 when
// c == channels -- in double, into v[0, in_w).
template <typename scalar_t>
void table_values(const scalar_t* image_n, int64_t channels, int64_t c, int64_t in_h, int64_t in_w, int64_t y,
                  double* __restrict v) {
  if (c < channels) {
    const scalar_t* src = image_n + (c * in_h + y) * in_w;
    for (int64_t x = 0; x < in_w; ++x) v[x] = static_cast<double>(src[x]);
    return;
  }
  std::fill(v, v + in_w, 0.0);
  for (int64_t cc = 0; cc < channels; ++cc) {
    const scalar_t* src = image_n + (cc * in_h + y) * in_w;
    for (int64_t x = 0; x < in_w; ++x) {
      const double f = static_cast<double>(src[x]);
      v[x] += f * f;
    }
  }
}

// The epilogue's ring of table rows, kept by each thread between calls (one for every method and
// dtype): a fresh one, ~270 KiB at 512²·32² and 2 MiB at 2048²·64², was page-faulted in on every call.
double* thread_ring(int64_t count) {
  thread_local std::vector<double> storage;
  if (storage.size() < static_cast<size_t>(count)) storage.resize(count);
  return storage.data();
}

// Columns of an output row handled together by the forward epilogue: the row's statistics and
// cross terms stay in L1 between its passes.
constexpr int64_t kEpilogueColumns = 256;

// The forward epilogue of one method, fused with the window statistics: no table of the image
// is stored. Each task takes a strip of output rows [y0, y1) of one image and accumulates the
// tables it needs from input row y0 on (a table started at a later row gives the same box sums,
// with smaller corners, so a tighter rounding bound), keeping the last h + 1 rows in a ring.
// When row i + h is in, output row y0 + i gets its statistics, once for all K templates, then
// per template a branch-free loop over the row (X = X' + sum_c rho_c S1_c, score_of<M>), a
// block of kEpilogueColumns columns at a time.
template <Method M, typename scalar_t>
void epilogue_strips(scalar_t* out, const scalar_t* image, const std::vector<match::TemplateStats>& tstats,
                     const double* rho, int64_t n, int64_t channels, int64_t in_h, int64_t in_w, int64_t kk, int64_t h,
                     int64_t w) {
  const int64_t out_h = in_h - h + 1, out_w = in_w - w + 1, stride = in_w + 1, slots = h + 1;
  constexpr bool sums = match::needs_sum(M), energy = match::needs_energy(M);
  const int64_t sum_tables = sums ? channels : 0, tables = sum_tables + (energy ? 1 : 0);
  const double inv_m = 1.0 / static_cast<double>(h * w);
  // About two tasks per thread; a strip re-accumulates h - 1 rows of its predecessor, so not
  // much shorter than the template.
  const int64_t strips_per_image = std::max<int64_t>(1, (2 * at::get_num_threads() + n - 1) / n);
  const int64_t strip = std::max<int64_t>(2 * h, (out_h + strips_per_image - 1) / strips_per_image);
  const int64_t strips = (out_h + strip - 1) / strip;
  const int64_t columns = std::min(out_w, kEpilogueColumns);
  at::parallel_for(0, n * strips, 1, [&](int64_t begin, int64_t end) {
    double* ring = thread_ring(tables * slots * stride);
    std::vector<double> values(in_w), cross(columns);
    std::vector<match::BoxRow> boxes(tables);
    StatisticsRow row(sum_tables, columns);
    auto slot = [&](int64_t q, int64_t r) { return ring + (q * slots + r % slots) * stride; };
    for (int64_t task = begin; task < end; ++task) {
      const int64_t nn = task / strips, y0 = (task % strips) * strip, y1 = std::min(out_h, y0 + strip);
      const scalar_t* image_n = image + nn * channels * in_h * in_w;
      for (int64_t q = 0; q < tables; ++q) std::fill(slot(q, 0), slot(q, 0) + stride, 0.0);
      for (int64_t r = 1; r <= y1 - y0 + h - 1; ++r) {  // local table row r sums input rows [y0, y0 + r)
        for (int64_t q = 0; q < tables; ++q) {
          table_values(image_n, channels, q < sum_tables ? q : channels, in_h, in_w, y0 + r - 1, values.data());
          prefix_sums<true>(values.data(), in_w, slot(q, r - 1), slot(q, r));
        }
        const int64_t i = r - h;
        if (i < 0) continue;
        const int64_t y = y0 + i;
        for (int64_t x0 = 0; x0 < out_w; x0 += columns) {
          const int64_t count = std::min(columns, out_w - x0);
          for (int64_t q = 0; q < tables; ++q) boxes[q] = match::box_between(slot(q, i) + x0, slot(q, r) + x0, w);
          row.fill(sums ? boxes.data() : nullptr, sum_tables, energy ? boxes.data() + sum_tables : nullptr, inv_m,
                   count);
          for (int64_t k = 0; k < kk; ++k) {
            scalar_t* v = out + ((nn * kk + k) * out_h + y) * out_w + x0;
            for (int64_t x = 0; x < count; ++x) cross[x] = static_cast<double>(v[x]);
            for (int64_t c = 0; c < sum_tables; ++c) {
              const double rho_kc = rho[k * channels + c];
              const double* s = row.s1.data() + c * row.width;
              for (int64_t x = 0; x < count; ++x) cross[x] += rho_kc * s[x];
            }
            const match::TemplateStats g = tstats[k];
            for (int64_t x = 0; x < count; ++x) {
              const match::WindowStats f{row.energy[x], row.variance[x], row.energy_tol[x], row.var_tol[x]};
              v[x] = static_cast<scalar_t>(match::score_of<M>(cross[x], f, g));
            }
          }
        }
      }
    }
  });
}

void epilogue_cpu(at::Tensor& cross, const at::Tensor& image, const at::Tensor& templ_stats, const at::Tensor& rho,
                  Method method, int64_t h, int64_t w) {
  if (method == Method::kCorr) return;
  const auto tstats = template_stats(templ_stats);
  const auto rho_c = rho.contiguous();
  AT_DISPATCH_FLOATING_TYPES(cross.scalar_type(), "match_template_epilogue_cpu", [&] {
    match::dispatch_method(method, [&](auto m) {
      epilogue_strips<decltype(m)::value>(cross.data_ptr<scalar_t>(), image.data_ptr<scalar_t>(), tstats,
                                          rho_c.data_ptr<double>(), image.size(0), image.size(1), image.size(2),
                                          image.size(3), cross.size(1), h, w);
    });
  });
}

// Backward partials, one window at a time (the backward pass is dominated by its correlations).
at::Tensor partials_cpu(const at::Tensor& grad, const at::Tensor& cross, const at::Tensor& sat1, const at::Tensor& sat2,
                        const at::Tensor& templ_stats, const at::Tensor& rho, Method method, int64_t h, int64_t w,
                        at::Tensor& d_cross, at::Tensor& d_window) {
  const int64_t n = cross.size(0), kk = cross.size(1), out_h = cross.size(2), out_w = cross.size(3);
  const auto tables = match::window_tables_view(sat1, sat2, rho.size(1), h, w);
  const auto tstats = template_stats(templ_stats);
  const auto rho_c = rho.contiguous();
  const double* rho_p = rho_c.data_ptr<double>();
  auto d_templ_rows = at::zeros({n * out_h, kk}, cross.options().dtype(at::kDouble));
  double* dt = d_templ_rows.data_ptr<double>();
  double* dw = d_window.data_ptr<double>();
  AT_DISPATCH_FLOATING_TYPES(cross.scalar_type(), "match_template_partials_cpu", [&] {
    const scalar_t* x_p = cross.data_ptr<scalar_t>();
    const scalar_t* g_p = grad.data_ptr<scalar_t>();
    scalar_t* dx = d_cross.data_ptr<scalar_t>();
    at::parallel_for(0, n * out_h, 4, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const int64_t nn = r / out_h, y = r % out_h;
        for (int64_t x = 0; x < out_w; ++x) {
          const auto f = tables.stats(nn, y, x);
          double window = 0.0;
          for (int64_t k = 0; k < kk; ++k) {
            const int64_t i = ((nn * kk + k) * out_h + y) * out_w + x;
            const double xc = tables.restored_cross(static_cast<double>(x_p[i]), rho_p + k * tables.channels, nn, y, x);
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

// Summed-area tables in double: sat1 of every channel, and sat2 of sum_c f_c^2. Two parallel
// passes, each over every table: row prefix sums (rows independent), then the running sum down
// the columns (column blocks independent, vectorized). The same additions in the same order
// whatever the thread count, so the values do not depend on it.
void tables_cpu(const at::Tensor& image, Method method, at::Tensor& sat1, at::Tensor& sat2) {
  const int64_t n = image.size(0), c = image.size(1), in_h = image.size(2), in_w = image.size(3);
  const int64_t stride = in_w + 1, plane = (in_h + 1) * stride;
  const auto options = image.options().dtype(at::kDouble);
  const bool sums = match::needs_sum(method), energy = match::needs_energy(method);
  if (sums) sat1 = at::empty({n, c, in_h + 1, in_w + 1}, options);
  if (energy) sat2 = at::empty({n, 1, in_h + 1, in_w + 1}, options);
  if (!sums && !energy) return;
  const int64_t sum_planes = sums ? n * c : 0, planes = sum_planes + (energy ? n : 0);
  // Table p < sum_planes is sat1's plane p, else sat2's plane p - sum_planes.
  auto table = [&](int64_t p) {
    return p < sum_planes ? sat1.data_ptr<double>() + p * plane : sat2.data_ptr<double>() + (p - sum_planes) * plane;
  };
  AT_DISPATCH_FLOATING_TYPES(image.scalar_type(), "match_template_tables_cpu", [&] {
    const scalar_t* f = image.data_ptr<scalar_t>();
    // Pass 1: t[y+1] = prefix sums of row y (of f_c, or of sum_c f_c^2).
    at::parallel_for(0, planes * in_h, 16, [&](int64_t begin, int64_t end) {
      std::vector<double> values(in_w);
      for (int64_t r = begin; r < end; ++r) {
        const int64_t p = r / in_h, y = r % in_h;
        const int64_t nn = p < sum_planes ? p / c : p - sum_planes, cc = p < sum_planes ? p % c : c;
        table_values(f + nn * c * in_h * in_w, c, cc, in_h, in_w, y, values.data());
        prefix_sums<false>(values.data(), in_w, nullptr, table(p) + (y + 1) * stride);
      }
    });
  });
  // Pass 2: t[0][:] = 0, t[y+1][x] += t[y][x], down each block of columns.
  constexpr int64_t kColumns = 256;
  const int64_t blocks = (stride + kColumns - 1) / kColumns;
  at::parallel_for(0, planes * blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      double* t = table(b / blocks);
      const int64_t x0 = (b % blocks) * kColumns, x1 = std::min(stride, x0 + kColumns);
      std::fill(t + x0, t + x1, 0.0);
      for (int64_t y = 1; y <= in_h; ++y) add_row(t + (y - 1) * stride + x0, t + y * stride + x0, x1 - x0);
    }
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
  impl_with_backward(m, "match_template", &match_template_cpu, &match_template_backward_cpu);
}

}  // namespace perceptual_ext
