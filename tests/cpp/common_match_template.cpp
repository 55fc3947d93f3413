// Unit tests of csrc/common/match_template.h (host build of the __host__ __device__ helpers).
#include <cmath>
#include <vector>

#include "check.h"
#include "common/match_template.h"

using namespace perceptual_ext::match;

namespace {

// Summed-area table with a leading zero row/column of an h x w image.
std::vector<double> sat_of(const std::vector<double>& img, int64_t h, int64_t w) {
  std::vector<double> t((h + 1) * (w + 1), 0.0);
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x)
      t[(y + 1) * (w + 1) + x + 1] =
          img[y * w + x] + t[y * (w + 1) + x + 1] + t[(y + 1) * (w + 1) + x] - t[y * (w + 1) + x];
  return t;
}

WindowStats stats_of(const std::vector<double>& window) {
  double s1 = 0, s2 = 0;
  for (double v : window) {
    s1 += v;
    s2 += v * v;
  }
  WindowAccumulator acc;
  acc.add_channel(s1, std::fabs(s1), 1.0 / static_cast<double>(window.size()));
  return acc.finish(s2, s2);
}

}  // namespace

int main() {
  // box_sum reads any box of the table exactly (integers).
  const int64_t h = 5, w = 7;
  std::vector<double> img(h * w);
  for (int64_t i = 0; i < h * w; ++i) img[i] = static_cast<double>((i * 7) % 11);
  const auto sat = sat_of(img, h, w);
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x)
      for (int64_t bh = 1; y + bh <= h; ++bh)
        for (int64_t bw = 1; x + bw <= w; ++bw) {
          double direct = 0;
          for (int64_t i = 0; i < bh; ++i)
            for (int64_t j = 0; j < bw; ++j) direct += img[(y + i) * w + x + j];
          CHECK(box_sum(sat.data(), w + 1, y, x, bh, bw) == direct);
          CHECK(box_magnitude(sat.data(), w + 1, y, x, bh, bw) >= std::fabs(direct));
        }

  // Window statistics: S2, V = S2 - S1^2/m.
  const auto s = stats_of({1.0, 2.0, 3.0, 4.0});
  CHECK_NEAR(s.energy, 30.0, 1e-12);
  CHECK_NEAR(s.variance, 5.0, 1e-12);

  // ncc: perfect, anti-correlated, flat rule.
  const auto g = template_stats(30.0, 5.0);
  CHECK_NEAR(score(Method::kNcc, 5.0, s, g), 1.0, 1e-12);
  CHECK_NEAR(score(Method::kNcc, -5.0, s, g), -1.0, 1e-12);
  CHECK(score(Method::kNcc, 5.0 * (1 + 1e-9), s, g) == 1.0);  // rounding past 1 is clamped
  const auto flat = stats_of({0.5, 0.5, 0.5, 0.5});
  const auto flat_g = template_stats(1.0, 1e-300);
  CHECK(flat.variance <= flat.var_tol);
  CHECK(score(Method::kNcc, 0.0, flat, g) == 0.0);
  CHECK(score(Method::kNcc, 0.0, s, flat_g) == 0.0);
  CHECK(score(Method::kNcc, 0.0, flat, flat_g) == 1.0);
  // The one flat-window rule the scores and partials share: ncc tests variances, the normed
  // methods energies.
  CHECK(normalizers<Method::kNcc>(flat, g).flat_f() && !normalizers<Method::kNcc>(flat, g).flat_g());
  CHECK(!normalizers<Method::kCorrNormed>(flat, g).any_flat());
  CHECK(normalizers<Method::kNcc>(flat, flat_g).flat_rule(1.0, 0.0, 0.3) == 1.0);
  CHECK(normalizers<Method::kNcc>(s, flat_g).flat_rule(1.0, 0.0, 0.3) == 0.0);
  CHECK(normalizers<Method::kNcc>(s, g).flat_rule(1.0, 0.0, 0.3) == 0.3);

  // corr_normed / ssd_normed, including zero energy on either side.
  CHECK_NEAR(score(Method::kCorrNormed, 30.0, s, g), 1.0, 1e-12);
  CHECK_NEAR(score(Method::kSsdNormed, 30.0, s, g), 0.0, 1e-12);
  CHECK_NEAR(score(Method::kSsdNormed, 0.0, s, g), 2.0, 1e-12);  // not clamped to 1
  const auto dark = stats_of({0.0, 0.0, 0.0, 0.0});
  const auto zero_g = template_stats(0.0, 0.0);
  CHECK(score(Method::kCorrNormed, 0.0, dark, g) == 0.0);
  CHECK(score(Method::kCorrNormed, 0.0, dark, zero_g) == 1.0);
  CHECK(score(Method::kSsdNormed, 0.0, dark, g) == 1.0);
  CHECK(score(Method::kSsdNormed, 0.0, dark, zero_g) == 0.0);

  // Unnormalized methods; ssd is clamped at 0 from below.
  CHECK(score(Method::kCorr, 3.5, s, g) == 3.5);
  CHECK(score(Method::kZeroMeanCorr, -2.0, s, g) == -2.0);
  CHECK_NEAR(score(Method::kSsd, 10.0, s, g), 40.0, 1e-12);
  CHECK(score(Method::kSsd, 30.0 + 1e-12, s, g) == 0.0);

  // Partials agree with central differences of score() in each argument.
  const double eps = 1e-6;
  for (Method m :
       {Method::kCorr, Method::kZeroMeanCorr, Method::kSsd, Method::kNcc, Method::kSsdNormed, Method::kCorrNormed}) {
    const auto win = stats_of({0.3, 0.9, 0.1, 0.6});
    const auto tpl = template_stats(1.7, 0.4);
    const double x = m == Method::kNcc ? 0.2 : 0.8;
    const auto p = partials(m, x, win, tpl);
    CHECK_NEAR(p.d_cross, (score(m, x + eps, win, tpl) - score(m, x - eps, win, tpl)) / (2 * eps), 1e-6);
    auto shifted = [&](double dw, double dt) {
      WindowStats f = win;
      TemplateStats t = tpl;
      if (m == Method::kNcc) {
        f.variance += dw;
        t.variance += dt;
      } else {
        f.energy += dw;
        t.energy += dt;
      }
      return score(m, x, f, t);
    };
    CHECK_NEAR(p.d_window, (shifted(eps, 0) - shifted(-eps, 0)) / (2 * eps), 1e-6);
    CHECK_NEAR(p.d_templ, (shifted(0, eps) - shifted(0, -eps)) / (2 * eps), 1e-6);
  }
  CHECK(partials(Method::kNcc, 0.0, flat, g).d_cross == 0.0);

  // NaN is never hidden: a NaN statistic or cross term gives a NaN score for every method (no
  // clamp to 0, no flat-window constant), also where the other side is flat; an overflowed ssd
  // (inf energy, finite cross term) stays inf, never 0.
  const double nan = std::nan("");
  WindowAccumulator nan_acc;
  nan_acc.add_channel(nan, nan, 0.25);
  const auto nan_window = nan_acc.finish(nan, nan);
  CHECK(std::isnan(nan_window.energy) && std::isnan(nan_window.variance));
  const auto nan_templ = template_stats(nan, nan);
  for (Method m : {Method::kZeroMeanCorr, Method::kSsd, Method::kNcc, Method::kSsdNormed, Method::kCorrNormed}) {
    CHECK(std::isnan(score(m, nan, s, g)));
    if (m != Method::kZeroMeanCorr) {
      CHECK(std::isnan(score(m, 0.5, nan_window, g)));
      CHECK(std::isnan(score(m, 0.5, nan_window, flat_g)));
      CHECK(std::isnan(score(m, 0.5, nan_window, zero_g)));
      CHECK(std::isnan(score(m, 0.5, s, nan_templ)));
      CHECK(std::isnan(score(m, 0.5, flat, nan_templ)));
      CHECK(std::isnan(score(m, 0.5, dark, nan_templ)));
      const auto p = partials(m, 0.5, nan_window, g);
      CHECK(m == Method::kSsd || (std::isnan(p.d_cross) && std::isnan(p.d_window)));
    }
  }
  CHECK(std::isnan(score(Method::kNcc, nan, flat, flat_g)));
  CHECK(std::isnan(score(Method::kCorrNormed, nan, dark, zero_g)));
  CHECK(std::isnan(score(Method::kSsdNormed, nan, dark, zero_g)));
  WindowAccumulator huge_acc;
  const auto huge = huge_acc.finish(INFINITY, INFINITY);
  CHECK(score(Method::kSsd, 1.0, huge, g) == INFINITY);
  CHECK(keep_nan_max0(-1.0) == 0.0 && keep_nan_max0(2.0) == 2.0 && std::isnan(keep_nan_max0(nan)));

  // Cost model: small templates go direct, large ones FFT; fft sizes are 2,3,5-smooth.
  CHECK(direct_cost(1, 1, 1, 505, 505, 8, 8, 8) < fft_cost(1, 1, 1, fft_size(512), fft_size(512), true));
  CHECK(direct_cost(1, 1, 1, 1985, 1985, 64, 64, 8) > fft_cost(1, 1, 1, fft_size(2048), fft_size(2048), true));
  CHECK(fft_size(512) == 512);
  CHECK(fft_size(97) == 100);
  CHECK(fft_size(1) == 1);
  CHECK(zero_mean_template(Method::kNcc) && !zero_mean_template(Method::kSsd));
  CHECK(needs_energy(Method::kCorrNormed) && !needs_energy(Method::kZeroMeanCorr));
  return check::finish("common_match_template");
}
