// Template-matching arithmetic shared by the CPU and CUDA kernels.
//
// Image f [N, C, H, W], template g [K, C, h, w], window (y, x) of m = h*w pixels per channel,
// channels summed. Every score is a function of the cross term X = sum g~ f (g~ = g, or g minus
// its per-channel mean for zero_mean_corr/ncc) and of window statistics read from summed-area
// tables accumulated in double:
//   S1_c = sum f_c (per channel),  S2 = sum_c sum f_c^2,  V_f = S2 - sum_c S1_c^2 / m.
// and of the template's own statistics (G2 = sum g^2, V_g = sum (g - mean_c g)^2).
//
// Flat windows (conventions, documented in the README): a side is "flat" when the statistic the
// score divides by (V for ncc, the energy S2/G2 for corr_normed and ssd_normed) is within the
// rounding bound of its evaluation.
//   ncc:          both flat -> 1, exactly one flat -> 0, else clamp(X / sqrt(V_f V_g), -1, 1)
//   corr_normed:  both flat -> 1, exactly one flat -> 0, else clamp(X / sqrt(S2 G2), -1, 1)
//   ssd_normed:   both flat -> 0, exactly one flat -> 1, else max(S2 - 2X + G2, 0) / sqrt(S2 G2)
//                 (no upper clamp: the exact value may exceed 1; OpenCV clamps it to 1)
//   ssd:          max(S2 - 2X + G2, 0);  corr, zero_mean_corr: X.
//
// NaN is never hidden: every clamp and every flat test is a comparison that is false for NaN
// (`!(v < 0) ? v : 0` keeps NaN, `v <= tol` is false for it), so a NaN statistic or cross term
// gives a NaN score and NaN partials, never a defined flat-window value (see keep_nan_max0). The
// host plan (host/match_template_plan.h) scores windows that touch a non-finite input as NaN
// itself; what reaches these functions as inf/NaN is an overflow, and it stays inf/NaN.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "common/macros.h"

namespace perceptual_ext {
namespace match {

enum class Method : int { kCorr = 0, kZeroMeanCorr = 1, kSsd = 2, kNcc = 3, kSsdNormed = 4, kCorrNormed = 5 };

// Relative rounding bound of a double evaluation of a window statistic from four SAT corners.
constexpr double kFlatTolerance = 64.0 * 2.220446049250313e-16;

// The score is defined with the per-channel zero-mean template.
PE_HOST_DEVICE constexpr bool zero_mean_template(Method m) {
  return m == Method::kZeroMeanCorr || m == Method::kNcc;
}
// The forward cross term is computed with the centred template, also for ssd: its float32 sum is
// then small and S2 - 2X + G2 is restored in double as X = X' + sum_c mean(g_c) S1_c, instead of
// cancelling large float32 terms.
PE_HOST_DEVICE constexpr bool centred_cross(Method m) {
  return zero_mean_template(m) || m == Method::kSsd || m == Method::kSsdNormed;
}
// Needs the per-channel window sums S1_c.
PE_HOST_DEVICE constexpr bool needs_sum(Method m) {
  return centred_cross(m);
}
// Needs the window energy S2.
PE_HOST_DEVICE constexpr bool needs_energy(Method m) {
  return m == Method::kSsd || m == Method::kNcc || m == Method::kSsdNormed || m == Method::kCorrNormed;
}

// The boxes of size h x w whose top-left corners lie on row y of a summed-area table with row
// stride `stride` (the table has one leading zero row and column: sat[y * stride + x] = sum of
// rows < y, cols < x). Corner rows as pointers, so that a loop over x is a plain array loop.
struct BoxRow {
  const double* bottom_right;  // sat row y + h, from column w
  const double* top_right;     // sat row y, from column w
  const double* bottom_left;   // sat row y + h
  const double* top_left;      // sat row y

  PE_HOST_DEVICE double sum(int64_t x) const { return bottom_right[x] - top_right[x] - bottom_left[x] + top_left[x]; }
  // Magnitude of the four corners read by sum(x): the scale of its rounding error.
  PE_HOST_DEVICE double magnitude(int64_t x) const {
    return fabs(bottom_right[x]) + fabs(top_right[x]) + fabs(bottom_left[x]) + fabs(top_left[x]);
  }
};

// Boxes of width w between two table rows h apart (any table with the leading zero column,
// also one accumulated from a later starting row: the box sums are the same).
PE_HOST_DEVICE PE_INLINE BoxRow box_between(const double* top, const double* bottom, int64_t w) {
  return BoxRow{bottom + w, top + w, bottom, top};
}

PE_HOST_DEVICE PE_INLINE BoxRow box_row(const double* sat, int64_t stride, int64_t y, int64_t h, int64_t w) {
  return box_between(sat + y * stride, sat + (y + h) * stride, w);
}

PE_HOST_DEVICE PE_INLINE double box_sum(const double* sat, int64_t stride, int64_t y, int64_t x, int64_t h, int64_t w) {
  return box_row(sat, stride, y, h, w).sum(x);
}

PE_HOST_DEVICE PE_INLINE double box_magnitude(const double* sat, int64_t stride, int64_t y, int64_t x, int64_t h,
                                              int64_t w) {
  return box_row(sat, stride, y, h, w).magnitude(x);
}

// max(v, 0) that keeps NaN (v > 0 ? v : 0 would turn NaN into 0: a perfect ssd match).
PE_HOST_DEVICE PE_INLINE double keep_nan_max0(double v) {
  return !(v < 0.0) ? v : 0.0;
}

// 0 for finite v, NaN for NaN or inf. Added to a flat-window value, so that the rule "one side
// flat -> a constant" does not hide a NaN on the other side (a select on isnan would do the same,
// but this stays plain arithmetic in the vectorized epilogue).
PE_HOST_DEVICE PE_INLINE double nan_of(double v) {
  return v - v;
}

// Statistics of one image window.
struct WindowStats {
  double energy;      // S2
  double variance;    // V_f = S2 - sum_c S1_c^2 / m, clamped at 0
  double energy_tol;  // S2 at or below this is zero energy
  double var_tol;     // V_f at or below this is flat
};

// Incremental construction: add each channel's S1_c (with its SAT magnitude), then finish with S2.
struct WindowAccumulator {
  double sum_sq_over_m = 0.0;  // sum_c S1_c^2 / m
  double sum_tol = 0.0;        // rounding bound of that sum

  PE_HOST_DEVICE void add_channel(double s1, double s1_magnitude, double inv_m) {
    sum_sq_over_m += s1 * s1 * inv_m;
    sum_tol += 2.0 * fabs(s1) * inv_m * s1_magnitude;
  }
  PE_HOST_DEVICE WindowStats finish(double s2, double s2_magnitude) const {
    WindowStats s;
    s.energy = keep_nan_max0(s2);
    s.energy_tol = kFlatTolerance * s2_magnitude;
    const double v = s2 - sum_sq_over_m;
    s.variance = keep_nan_max0(v);
    s.var_tol = kFlatTolerance * (s2_magnitude + sum_tol);
    return s;
  }
};

// Statistics of one template, computed once per template in double.
struct TemplateStats {
  double energy;    // G2 = sum g^2
  double variance;  // V_g = sum (g - mean_c g)^2
  double energy_tol;
  double var_tol;
};

PE_HOST_DEVICE PE_INLINE TemplateStats template_stats(double energy, double variance) {
  // Both are sums of squares evaluated directly (not as differences of SAT corners); a constant
  // template leaves only the rounding of its mean in V_g, far below this bound.
  return TemplateStats{energy, variance, kFlatTolerance * energy, kFlatTolerance * energy};
}

// Read access to the summed-area tables of one batch: sat1 [N, C, H+1, W+1] (per channel, or
// nullptr when the method needs no S1_c) and sat2 [N, 1, H+1, W+1] (sum_c f_c^2, or nullptr).
struct WindowTables {
  const double* sat1;
  const double* sat2;
  int64_t channels, stride, plane, h, w;

  PE_HOST_DEVICE double sum(int64_t n, int64_t c, int64_t y, int64_t x) const {  // S1_c
    return box_sum(sat1 + (n * channels + c) * plane, stride, y, x, h, w);
  }
  PE_HOST_DEVICE WindowStats stats(int64_t n, int64_t y, int64_t x) const {
    WindowAccumulator acc;
    const double inv_m = 1.0 / static_cast<double>(h * w);
    if (sat1 != nullptr) {
      for (int64_t c = 0; c < channels; ++c) {
        const BoxRow box = box_row(sat1 + (n * channels + c) * plane, stride, y, h, w);
        acc.add_channel(box.sum(x), box.magnitude(x), inv_m);
      }
    }
    if (sat2 == nullptr) return acc.finish(0.0, 0.0);
    const BoxRow box = box_row(sat2 + n * plane, stride, y, h, w);
    return acc.finish(box.sum(x), box.magnitude(x));
  }
  // The method's cross term X = X' + sum_c rho_c S1_c (see prepare_template); X' where the cross
  // term was not computed with a shifted template (sat1 == nullptr).
  PE_HOST_DEVICE double restored_cross(double x_value, const double* rho_k, int64_t n, int64_t y, int64_t x) const {
    if (sat1 == nullptr) return x_value;
    for (int64_t c = 0; c < channels; ++c) x_value += rho_k[c] * sum(n, c, y, x);
    return x_value;
  }
};

// The statistics a normalized score divides by -- (V_f, V_g) for ncc, the energies (S2, G2) for
// corr_normed and ssd_normed -- and the flat-window rule on them, in one place for the scores and
// their partials. A side is flat when its statistic is within its rounding bound (false for NaN).
struct Normalizers {
  double f, f_tol, g, g_tol;

  PE_HOST_DEVICE bool flat_f() const { return f <= f_tol; }
  PE_HOST_DEVICE bool flat_g() const { return g <= g_tol; }
  PE_HOST_DEVICE bool any_flat() const { return flat_f() || flat_g(); }
  // both flat -> both, exactly one flat -> one, else value (a select: `value` may be inf/NaN
  // from a division by a flat statistic and is then discarded).
  PE_HOST_DEVICE double flat_rule(double both, double one, double value) const {
    const bool ff = flat_f(), fg = flat_g();
    return ff ? (fg ? both : one) : (fg ? one : value);
  }
};

template <Method M>
PE_HOST_DEVICE PE_INLINE Normalizers normalizers(const WindowStats& f, const TemplateStats& g) {
  if constexpr (M == Method::kNcc) return Normalizers{f.variance, f.var_tol, g.variance, g.var_tol};
  return Normalizers{f.energy, f.energy_tol, g.energy, g.energy_tol};
}

// Clamp to [-1, 1]; NaN stays NaN (both comparisons are false for it).
PE_HOST_DEVICE PE_INLINE double clamp_unit(double v) {
  return v > 1.0 ? 1.0 : (v < -1.0 ? -1.0 : v);
}

// Score of one window against one template from the cross term X, for a method known at compile
// time. Branch-free (selects, not returns), so that a loop over windows vectorizes on the CPU;
// the discarded operand of a select may be inf/NaN (division by a flat statistic), never returned.
// A NaN statistic is never flat (`<=` is false for NaN), so it reaches the returned ratio.
template <Method M>
PE_HOST_DEVICE PE_INLINE double score_of(double x, const WindowStats& f, const TemplateStats& g) {
  if constexpr (M == Method::kCorr || M == Method::kZeroMeanCorr) {
    return x;
  } else if constexpr (M == Method::kSsd) {
    return keep_nan_max0(f.energy - 2.0 * x + g.energy);
  } else if constexpr (M == Method::kNcc || M == Method::kCorrNormed) {
    const Normalizers s = normalizers<M>(f, g);
    const double r = clamp_unit(x / sqrt(s.f * s.g));
    return s.flat_rule(1.0, 0.0, r) + nan_of(x) + nan_of(s.f) + nan_of(s.g);
  } else {  // kSsdNormed
    const Normalizers s = normalizers<M>(f, g);
    const double d = s.f - 2.0 * x + s.g;
    return s.flat_rule(0.0, 1.0, keep_nan_max0(d) / sqrt(s.f * s.g)) + nan_of(d);
  }
}

// Calls fn(std::integral_constant<Method, M>{}) for the runtime method: one instantiation of a
// per-method loop each, with the method's branch hoisted out of the loop.
template <typename Fn>
PE_HOST_DEVICE PE_INLINE auto dispatch_method(Method method, Fn&& fn) {
  switch (method) {
    case Method::kCorr:
      return fn(std::integral_constant<Method, Method::kCorr>{});
    case Method::kZeroMeanCorr:
      return fn(std::integral_constant<Method, Method::kZeroMeanCorr>{});
    case Method::kSsd:
      return fn(std::integral_constant<Method, Method::kSsd>{});
    case Method::kNcc:
      return fn(std::integral_constant<Method, Method::kNcc>{});
    case Method::kSsdNormed:
      return fn(std::integral_constant<Method, Method::kSsdNormed>{});
    case Method::kCorrNormed:
      break;
  }
  return fn(std::integral_constant<Method, Method::kCorrNormed>{});
}

PE_HOST_DEVICE PE_INLINE double score(Method method, double x, const WindowStats& f, const TemplateStats& g) {
  return dispatch_method(method, [&](auto m) { return score_of<decltype(m)::value>(x, f, g); });
}

// Partial derivatives of score() with respect to X, the window statistic (S2, or V_f for ncc)
// and the template statistic (G2, or V_g for ncc). Flat windows are constants: zero gradient
// (NaN where a statistic or the cross term is NaN/inf).
// The rounding clamps are ignored (they only act on values off by rounding).
struct Partials {
  double d_cross;
  double d_window;
  double d_templ;
};

// A flat window's partials: 0, or NaN where the cross term or a statistic is NaN/inf.
PE_HOST_DEVICE PE_INLINE Partials flat_partials(double x, double window, double templ) {
  const double nan = nan_of(x) + nan_of(window) + nan_of(templ);
  return Partials{nan, nan, nan};
}

// num / sqrt(s.f s.g) with X the cross term: d/dX = 1/sqrt(s.f s.g) (times the caller's dnum/dX),
// d/ds.f = -num/(2 s.f sqrt(s.f s.g)), d/ds.g likewise; the flat rule's zero (or NaN) partials
// where a side is flat.
PE_HOST_DEVICE PE_INLINE Partials normalized_partials(const Normalizers& s, double x, double num) {
  if (s.any_flat()) return flat_partials(x, s.f, s.g);
  const double inv_d = 1.0 / sqrt(s.f * s.g);
  const double r = num * inv_d;
  return Partials{inv_d, -0.5 * r / s.f, -0.5 * r / s.g};
}

PE_HOST_DEVICE PE_INLINE Partials partials(Method method, double x, const WindowStats& f, const TemplateStats& g) {
  switch (method) {
    case Method::kCorr:
    case Method::kZeroMeanCorr:
      return Partials{1.0, 0.0, 0.0};
    case Method::kSsd:
      return Partials{-2.0, 1.0, 1.0};
    case Method::kNcc:
      return normalized_partials(normalizers<Method::kNcc>(f, g), x, x);
    case Method::kCorrNormed:
      return normalized_partials(normalizers<Method::kCorrNormed>(f, g), x, x);
    case Method::kSsdNormed: {
      const Normalizers s = normalizers<Method::kSsdNormed>(f, g);
      const Partials p = normalized_partials(s, x, s.f - 2.0 * x + s.g);
      if (s.any_flat()) return p;
      const double inv_d = 1.0 / sqrt(s.f * s.g);
      return Partials{-2.0 * inv_d, p.d_window + inv_d, p.d_templ + inv_d};
    }
  }
  return Partials{0.0, 0.0, 0.0};
}

// Cost model of the cross term out[N,O,Ho,Wo] = sum_i corr(in[N,I,H,W], weight[O,I,h,w]):
// the direct kernel's multiply-adds (its inner loop runs over `lanes`-wide vectors of output
// columns, so narrow outputs waste lanes) against the FFT path's transforms and spectral products
// at the padded size P = Hf * Wf. The constants are measured ratios of the two paths' throughput
// on the CPU (direct: vectorized float FMAs; FFT: ATen's, MKL in the PyPI wheels).
PE_HOST_DEVICE PE_INLINE double direct_cost(int64_t n, int64_t i, int64_t o, int64_t out_h, int64_t out_w, int64_t h,
                                            int64_t w, int64_t lanes) {
  const int64_t padded_w = ((out_w + lanes - 1) / lanes) * lanes;
  return static_cast<double>(n) * i * o * out_h * padded_w * h * w;
}

PE_HOST_DEVICE PE_INLINE double fft_cost(int64_t n, int64_t i, int64_t o, int64_t fft_h, int64_t fft_w,
                                         bool single_precision) {
  const double p = static_cast<double>(fft_h) * fft_w;
  const double p_log_p = p * log2(p > 2.0 ? p : 2.0);
  // In units of one direct float multiply-add: float64 forward real transform ~4 p log p, inverse
  // ~21 p log p (one core, 512²); float32 transforms ~2x (forward) to ~4x (inverse) faster. The
  // spectral product and the passes around each pair's transforms (padding, mean, copy out)
  // ~120 per pixel and pair (fitted at 2 threads to 8 x 16 pairs of 256², 1 x 16 of 512², 3 channels).
  const double forward = single_precision ? 2.2 : 4.2, inverse = single_precision ? 5.5 : 21.0;
  return forward * static_cast<double>(n * i + o * i) * p_log_p + inverse * static_cast<double>(n * o) * p_log_p +
         120.0 * static_cast<double>(n * i * o) * p;
}

// Smallest 2,3,5-smooth size >= n (fast FFT lengths).
PE_HOST_DEVICE PE_INLINE int64_t fft_size(int64_t n) {
  if (n <= 1) return 1;
  for (int64_t s = n;; ++s) {
    int64_t r = s;
    while (r % 2 == 0) r /= 2;
    while (r % 3 == 0) r /= 3;
    while (r % 5 == 0) r /= 5;
    if (r == 1) return s;
  }
}

}  // namespace match
}  // namespace perceptual_ext
