// Unit tests of csrc/common/lpips_layer.h (host build of the __host__ __device__ helpers).
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "check.h"
#include "common/lpips_layer.h"

using namespace perceptual_ext::lpips_layer;

namespace {

// Plain per-pixel definition, channels contiguous: sum_c w_c (a_c/(|a|+eps) - b_c/(|b|+eps))^2.
double naive(const std::vector<double>& a, const std::vector<double>& b, const std::vector<double>& w) {
  double sa = 0, sb = 0;
  for (size_t c = 0; c < a.size(); ++c) {
    sa += a[c] * a[c];
    sb += b[c] * b[c];
  }
  const double na = std::sqrt(sa) + 1e-10, nb = std::sqrt(sb) + 1e-10;
  double out = 0;
  for (size_t c = 0; c < a.size(); ++c) out += w[c] * (a[c] / na - b[c] / nb) * (a[c] / na - b[c] / nb);
  return out;
}

}  // namespace

int main() {
  std::mt19937_64 rng(7);
  std::normal_distribution<double> normal;
  std::uniform_real_distribution<double> uniform(0.0, 2.0);

  CHECK_NEAR(inv_norm<double>(0.0), 1e10, 1e-3);
  CHECK(radial<double>(3.0, 0.0, inv_norm<double>(0.0)) == 0.0);  // x == 0: no 0/0
  CHECK(term<double>(0.5, -2.0) == 2.0);
  CHECK(unit_grad<double>(1.0, 0.5, 0.25) == 0.25);
  CHECK(unit_diff<double>(0.3, 0.3, 1.7, 1.7) == 0.0);
  CHECK_NEAR(unit_diff<double>(0.3, -0.2, 2.0, 0.5), 0.7, 1e-15);

  for (int64_t channels : {1, 2, 3, 17, 64}) {
    // One pixel stored with channels `stride` apart, as in NCHW.
    const int64_t stride = 5;
    std::vector<double> a(channels), b(channels), w(channels);
    std::vector<double> sa(channels * stride, 99.0), sb(channels * stride, 99.0);
    for (int64_t c = 0; c < channels; ++c) {
      a[c] = normal(rng);
      b[c] = normal(rng);
      w[c] = uniform(rng);
      sa[c * stride] = a[c];
      sb[c * stride] = b[c];
    }
    const double out = pixel_forward<double, double>(sa.data(), sb.data(), w.data(), channels, stride);
    CHECK_NEAR(out, naive(a, b, w), 1e-13);
    CHECK(out >= 0.0);

    // Backward against central differences of the naive definition.
    const double g = 0.7;
    std::vector<double> da(channels * stride, 0.0), db(channels * stride, 0.0);
    pixel_backward<double, double>(g, sa.data(), sb.data(), w.data(), channels, stride, da.data(), db.data());
    const double h = 1e-6;
    for (int64_t c = 0; c < channels; ++c) {
      std::vector<double> ap = a, am = a, bp = b, bm = b;
      ap[c] += h;
      am[c] -= h;
      bp[c] += h;
      bm[c] -= h;
      CHECK_NEAR(da[c * stride], g * (naive(ap, b, w) - naive(am, b, w)) / (2 * h), 1e-7);
      CHECK_NEAR(db[c * stride], g * (naive(a, bp, w) - naive(a, bm, w)) / (2 * h), 1e-7);
    }
    // Only the wanted gradient is written.
    std::vector<double> only_a(channels * stride, 5.0);
    pixel_backward<double, double>(g, sa.data(), sb.data(), w.data(), channels, stride, only_a.data(), nullptr);
    for (int64_t c = 0; c < channels; ++c)
      CHECK_NEAR(only_a[c * stride], da[c * stride], 1e-14 * (1 + std::fabs(da[c * stride])));

    // a == b: distance 0 and both gradients exactly 0 (lpips at x == y).
    std::vector<double> za(channels * stride), zb(channels * stride);
    pixel_backward<double, double>(g, sa.data(), sa.data(), w.data(), channels, stride, za.data(), zb.data());
    const double same = pixel_forward<double, double>(sa.data(), sa.data(), w.data(), channels, stride);
    CHECK(same == 0.0);
    for (int64_t c = 0; c < channels; ++c) CHECK(za[c * stride] == 0.0 && zb[c * stride] == 0.0);

    // a == 0 (a dead ReLU pixel): finite gradient, the limit i_a u (the radial term vanishes).
    std::vector<double> zero(channels * stride, 0.0), dz(channels * stride, 0.0);
    pixel_backward<double, double>(g, zero.data(), sb.data(), w.data(), channels, stride, dz.data(), nullptr);
    const double nb = std::sqrt([&] {
                        double s = 0;
                        for (double v : b) s += v * v;
                        return s;
                      }()) +
                      1e-10;
    for (int64_t c = 0; c < channels; ++c) {
      CHECK(std::isfinite(dz[c * stride]));
      CHECK_NEAR(dz[c * stride] / 1e10, 2 * g * w[c] * (0.0 - b[c] / nb), 1e-9);
    }
    const double at_zero = pixel_forward<double, double>(zero.data(), sb.data(), w.data(), channels, stride);
    CHECK_NEAR(at_zero, naive(std::vector<double>(channels, 0.0), b, w), 1e-13);

    // float storage and accumulation agree with double to float rounding.
    std::vector<float> fa(sa.begin(), sa.end()), fb(sb.begin(), sb.end()), fw(w.begin(), w.end());
    const float fout = pixel_forward<float, float>(fa.data(), fb.data(), fw.data(), channels, stride);
    CHECK_NEAR(static_cast<double>(fout), out, 1e-5 * (1.0 + out));
  }
  return check::finish("common_lpips_layer");
}
