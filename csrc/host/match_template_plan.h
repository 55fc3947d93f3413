// Host-side plan of the template-matching op, shared by the CPU and CUDA kernels: template
// statistics, summed-area tables, the FFT cross term and the assembly of the backward pass are
// ATen compositions; each device supplies only its elementwise/direct kernels (DeviceKernels).
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "host/checks.h"
#include "common/match_template.h"

namespace perceptual_ext {
namespace match {

inline Method parse_method(const std::string& name) {
  if (name == "corr") return Method::kCorr;
  if (name == "zero_mean_corr") return Method::kZeroMeanCorr;
  if (name == "ssd") return Method::kSsd;
  if (name == "ncc") return Method::kNcc;
  if (name == "ssd_normed") return Method::kSsdNormed;
  if (name == "corr_normed") return Method::kCorrNormed;
  TORCH_CHECK(false,
              "match_template: method must be one of corr, zero_mean_corr, ssd, ncc, ssd_normed, "
              "corr_normed, got '",
              name, "'");
}

// The device's own kernels. Shapes: out/cross [N, K, Ho, Wo] (input dtype), sat1 [N, C, H+1, W+1]
// and sat2 [N, 1, H+1, W+1] float64 (undefined when the method does not need them), templ_stats
// [K, 2] float64 (energy, variance), rho [K, C] float64 (see prepare_template).
struct DeviceKernels {
  // out[n, o] = sum_i valid-correlation(input[n, i], weight[o, i]), into `out` [N, O, Ho, Wo] (contiguous,
  // never empty), input and weight contiguous.
  void (*direct_xcorr)(const at::Tensor& input, const at::Tensor& weight, at::Tensor& out);
  // cross -> score, in place, with the window statistics of `image` (contiguous [N, C, H, W]).
  void (*epilogue)(at::Tensor& cross, const at::Tensor& image, const at::Tensor& templ_stats, const at::Tensor& rho,
                   Method method, int64_t h, int64_t w);
  // From grad and the cross term: fills d_cross = grad * dscore/dX (input dtype, [N,K,Ho,Wo]) and
  // d_window [N,1,Ho,Wo] float64 = sum_k grad * dscore/dS2 (or dV_f for ncc); returns partial sums
  // [R, K] float64 (R chosen by the device, no atomics) of grad * dscore/dG2 (or dV_g for ncc).
  at::Tensor (*partials)(const at::Tensor& grad, const at::Tensor& cross, const at::Tensor& sat1,
                         const at::Tensor& sat2, const at::Tensor& templ_stats, const at::Tensor& rho, Method method,
                         int64_t h, int64_t w, at::Tensor& d_cross, at::Tensor& d_window);
  // Summed-area tables of the window statistics the method needs (see window_tables).
  void (*tables)(const at::Tensor& image, Method method, at::Tensor& sat1, at::Tensor& sat2);
  int64_t lanes;  // vector width of the direct kernel's inner loop (cost model)
};

inline void check_inputs(const at::Tensor& image, const at::Tensor& templ, const char* op) {
  check_rank(image, 4, op, "image", "[N, C, H, W]");
  check_rank(templ, 4, op, "templ", "[K, C, h, w]");
  check_dtype(image, {at::kFloat, at::kDouble}, op, "image");
  check_same(image, templ, op, "image", "templ");
  TORCH_CHECK(image.size(1) == templ.size(1), op, ": image and templ must have the same channels, got ", image.size(1),
              " and ", templ.size(1));
  TORCH_CHECK(templ.size(2) >= 1 && templ.size(3) >= 1, op, ": templ must have h, w >= 1, got ", templ.sizes());
  TORCH_CHECK(templ.size(2) <= image.size(2) && templ.size(3) <= image.size(3), op,
              ": templ must not be larger than image, got templ ", templ.sizes(), " and image ", image.sizes());
}

// Summed-area table with a leading zero row and column, float64: [B, C, H+1, W+1].
inline at::Tensor summed_area_table(const at::Tensor& x) {
  auto sat = at::zeros({x.size(0), x.size(1), x.size(2) + 1, x.size(3) + 1}, x.options().dtype(at::kDouble));
  sat.narrow(2, 1, x.size(2)).narrow(3, 1, x.size(3)).copy_(x);
  sat.cumsum_(2);
  sat.cumsum_(3);
  return sat;
}

// Box sums of size h x w at every valid position, from a table made by summed_area_table.
inline at::Tensor box_sums(const at::Tensor& sat, int64_t h, int64_t w) {
  const int64_t oh = sat.size(2) - h, ow = sat.size(3) - w;
  auto rows = [&](int64_t y0) { return sat.narrow(2, y0, oh); };
  return rows(h).narrow(3, w, ow) - rows(0).narrow(3, w, ow) - rows(h).narrow(3, 0, ow) + rows(0).narrow(3, 0, ow);
}

// Adjoint of the valid box sum: every pixel collects the values of the windows that contain it.
inline at::Tensor box_sums_adjoint(const at::Tensor& windows, int64_t h, int64_t w) {
  const auto padded = at::constant_pad_nd(windows, {w - 1, w - 1, h - 1, h - 1}, 0.0);
  return box_sums(summed_area_table(padded), h, w);
}

// Pointers and strides of the tables for the kernels (null where the method needs no table).
inline WindowTables window_tables_view(const at::Tensor& sat1, const at::Tensor& sat2, int64_t channels, int64_t h,
                                       int64_t w) {
  const at::Tensor& any = sat1.defined() ? sat1 : sat2;
  WindowTables t{sat1.defined() ? sat1.data_ptr<double>() : nullptr,
                 sat2.defined() ? sat2.data_ptr<double>() : nullptr,
                 channels,
                 0,
                 0,
                 h,
                 w};
  if (any.defined()) {
    t.stride = any.size(3);
    t.plane = any.size(2) * any.size(3);
  }
  return t;
}

struct PreparedTemplate {
  at::Tensor used;   // [K, C, h, w] input dtype: the template the cross term X' is computed with
  at::Tensor stats;  // [K, 2] float64: G2 = sum g^2, V_g = sum (g - mean_c g)^2
  at::Tensor rho;    // [K, C] float64: window mean of (the method's template, exact) - used; the
                     // epilogue restores X = X' + sum_c rho_c S1_c (the template mean for ssd, the
                     // rounding residue of the centred template for ncc/zero_mean_corr)
};

// `centre`: compute the cross term with the centred template (see centred_cross); the backward
// pass differentiates the method's own definition and centres only for zero-mean methods.
inline PreparedTemplate prepare_template(const at::Tensor& templ, Method method, bool centre) {
  const auto g = templ.to(at::kDouble);
  const auto centred = g - g.mean({2, 3}, /*keepdim=*/true);
  const auto energy = g.square().sum({1, 2, 3});
  const auto variance = centred.square().sum({1, 2, 3});
  PreparedTemplate p;
  p.stats = at::stack({energy, variance}, 1).contiguous();
  if (centre || zero_mean_template(method)) {
    p.used = centred.to(templ.scalar_type()).contiguous();
    const auto& exact = zero_mean_template(method) ? centred : g;
    p.rho = (exact - p.used.to(at::kDouble)).mean({2, 3}).contiguous();
  } else {
    p.used = templ.contiguous();
    p.rho = at::zeros({templ.size(0), templ.size(1)}, g.options());
  }
  return p;
}

// Buffers of fft_xcorr kept between the calls of one thread, on the CPU: a fresh buffer's pages
// are faulted in on first touch (~1 us a page, ~250 pages a call at 512² -- as much time as a
// transform, and the main source of the timing spread). Device memory is already reused by the
// CUDA caching allocator. At most kFftWorkspaceBytes are kept per thread (a 2048² float32 image
// with one template keeps 96 MiB); larger problems allocate per call.
constexpr int64_t kFftWorkspaceBytes = int64_t(128) << 20;

struct FftBuffer {
  at::Tensor tensor;
  int64_t rows = -1, cols = -1;  // the extent last written at the top left (the rest is zero)
};

struct FftWorkspace {
  FftBuffer image, templ;                             // zero-padded real inputs
  FftBuffer image_spectrum, templ_spectrum, product;  // half spectra
  FftBuffer columns, spatial;                         // the inverse: column pass, then rows
};

inline FftWorkspace& fft_workspace() {
  thread_local FftWorkspace workspace;
  return workspace;
}

// Frees the calling thread's buffers (perceptual_ext.ops.release_fft_workspace).
inline void release_fft_workspace() {
  fft_workspace() = FftWorkspace{};
}

// An uninitialized [sizes] buffer: the kept one when it fits (keep), else a new one.
inline at::Tensor fft_buffer(FftBuffer& slot, at::IntArrayRef sizes, const at::TensorOptions& options, bool keep) {
  if (!keep) return at::empty(sizes, options);
  const auto& t = slot.tensor;
  if (!t.defined() || t.sizes() != sizes || t.dtype() != options.dtype() || t.device() != options.device()) {
    slot.tensor = at::empty(sizes, options);
    slot.rows = slot.cols = -1;
  }
  return slot.tensor;
}

// A [B, C, fh, fw] buffer that is zero outside its top-left [rows, cols], which the caller
// writes (the returned view); the zeros are written only when the kept buffer last held data
// of another extent.
inline std::pair<at::Tensor, at::Tensor> zero_padded(FftBuffer& slot, int64_t b, int64_t c, int64_t rows, int64_t cols,
                                                     int64_t fh, int64_t fw, const at::TensorOptions& options,
                                                     bool keep) {
  auto padded = fft_buffer(slot, {b, c, fh, fw}, options, keep);
  if (!keep) {
    // A buffer of its own: the kept one, and the extent recorded for it, are left alone (recording
    // this extent would let the next kept call skip the zeroing over an older, larger extent).
    padded.zero_();
  } else if (slot.rows != rows || slot.cols != cols) {
    padded.zero_();
    slot.rows = rows;
    slot.cols = cols;
  }
  return {padded, padded.narrow(2, 0, rows).narrow(3, 0, cols)};
}

// Valid cross-correlation by FFT (any device): out[n, o] = sum_i f_i (*) w_oi, as the circular
// convolution with the flipped template (no conjugate to materialize) read at offset (h-1, w-1),
// where no wrap-around reaches for transform sizes >= the image's. Products are transformed back
// in chunks of output channels to bound the spectral buffer. Computed in the input's dtype on the
// image minus its per-plane mean (the transform's rounding scales with the signal's norm, so this
// keeps float32 accurate on bright, low-contrast images); the mean's share, mean_i * sum(w_oi), is
// added back. The inverse runs as its two passes (columns, then the real rows), the way ATen's
// irfft2 does, so that both write into kept buffers.
inline at::Tensor fft_xcorr(const at::Tensor& input, const at::Tensor& weight) {
  const int64_t n = input.size(0), ci = input.size(1), o = weight.size(0);
  const int64_t h = weight.size(2), w = weight.size(3);
  const int64_t oh = input.size(2) - h + 1, ow = input.size(3) - w + 1;
  const int64_t fh = fft_size(input.size(2)), fw = fft_size(input.size(3)), fc = fw / 2 + 1;
  auto out = at::empty({n, o, oh, ow}, input.options());
  if (out.numel() == 0) return out;
  const auto plane_mean = input.mean({2, 3}, /*keepdim=*/true);  // [N, I, 1, 1], the value subtracted
  const auto mean_share = at::mm(plane_mean.view({n, ci}).to(at::kDouble), weight.to(at::kDouble).sum({2, 3}).t())
                              .to(input.scalar_type());  // [N, O]
  // Small enough that a chunk's product, column pass and spatial result stay in cache: one
  // template at a time for a batch of 8 images of 256² ran 2.7x faster than all 16 at once.
  constexpr int64_t kChunkElements = int64_t(1) << 17;
  const int64_t chunk = std::max<int64_t>(1, kChunkElements / std::max<int64_t>(1, n * fh * fw));
  const int64_t oc_max = std::min(chunk, o);
  const auto complex = input.options().dtype(c10::toComplexType(input.scalar_type()));
  const int64_t real_bytes = input.element_size(), spectrum_bytes = 2 * real_bytes;
  const int64_t kept = real_bytes * fh * fw * (n * ci + o * ci + n * oc_max) +
                       spectrum_bytes * fh * fc * (n * ci + o * ci + 2 * n * oc_max);
  const bool keep = input.is_cpu() && kept <= kFftWorkspaceBytes;
  FftWorkspace& ws = fft_workspace();

  auto [image, image_data] = zero_padded(ws.image, n, ci, input.size(2), input.size(3), fh, fw, input.options(), keep);
  at::sub_out(image_data, input, plane_mean);
  auto fi = fft_buffer(ws.image_spectrum, {n, ci, fh, fc}, complex, keep);
  at::fft_rfft2_out(fi, image);
  // A full 2-D transform of the padded template: transforming its h nonzero rows first and then
  // the columns costs fewer flops, but leaves the spectrum column-major, and the product with a
  // strided operand is ~10x slower than the transform saves.
  auto [templ, templ_data] = zero_padded(ws.templ, o, ci, h, w, fh, fw, weight.options(), keep);
  templ_data.copy_(weight.flip({2, 3}));
  auto fwt = fft_buffer(ws.templ_spectrum, {o, ci, fh, fc}, complex, keep);
  at::fft_rfft2_out(fwt, templ);
  for (int64_t o0 = 0; o0 < o; o0 += chunk) {
    const int64_t oc = std::min(chunk, o - o0);
    // prod[n, o] = sum_i fi[n, i] * fwt[o, i]; in place of the image spectrum where it is not needed
    // again (one image channel, one template).
    const auto fwt_chunk = fwt.narrow(0, o0, oc);
    at::Tensor prod;
    if (ci == 1 && o == 1) {
      prod = fi.mul_(fwt_chunk);
    } else {
      prod = fft_buffer(ws.product, {n, oc, fh, fc}, complex, keep);
      at::mul_out(prod, fi.select(1, 0).unsqueeze(1), fwt_chunk.select(1, 0).unsqueeze(0));
      for (int64_t i = 1; i < ci; ++i) prod.addcmul_(fi.select(1, i).unsqueeze(1), fwt_chunk.select(1, i).unsqueeze(0));
    }
    constexpr int64_t kByN = 2;  // ATen's fft_norm_mode::by_n: each pass divides by its length
    auto columns = fft_buffer(ws.columns, {n, oc, fh, fc}, complex, keep);
    at::_fft_c2c_out(columns, prod, {2}, kByN, /*forward=*/false);
    auto spatial = fft_buffer(ws.spatial, {n, oc, fh, fw}, input.options(), keep);
    at::_fft_c2r_out(spatial, columns, {3}, kByN, fw);
    auto out_chunk = out.narrow(1, o0, oc);
    at::add_out(out_chunk, spatial.narrow(2, h - 1, oh).narrow(3, w - 1, ow),
                mean_share.narrow(1, o0, oc).view({n, oc, 1, 1}));
  }
  return out;
}

// The cross term by whichever path the cost model prefers.
inline at::Tensor xcorr(const at::Tensor& input, const at::Tensor& weight, const DeviceKernels& k) {
  const int64_t n = input.size(0), ci = input.size(1), o = weight.size(0);
  const int64_t h = weight.size(2), w = weight.size(3);
  const int64_t oh = input.size(2) - h + 1, ow = input.size(3) - w + 1;
  if (n * o * oh * ow == 0 || ci == 0) return at::zeros({n, o, oh, ow}, input.options());
  const double direct = direct_cost(n, ci, o, oh, ow, h, w, k.lanes);
  const double fft =
      fft_cost(n, ci, o, fft_size(input.size(2)), fft_size(input.size(3)), input.scalar_type() == at::kFloat);
  if (direct > fft) return fft_xcorr(input, weight);
  auto out = at::empty({n, o, oh, ow}, input.options());
  k.direct_xcorr(input.contiguous(), weight.contiguous(), out);
  return out;
}

struct Tables {
  at::Tensor sat1;  // [N, C, H+1, W+1] or undefined
  at::Tensor sat2;  // [N, 1, H+1, W+1] or undefined
};

// sat1: tables of every channel (when the method needs S1_c); sat2: table of sum_c f_c^2 (when it
// needs S2). As ATen ops, for devices without a fused kernel of their own.
inline void window_tables_composed(const at::Tensor& image, Method method, at::Tensor& sat1, at::Tensor& sat2) {
  if (needs_sum(method)) sat1 = summed_area_table(image);
  if (needs_energy(method)) sat2 = summed_area_table(image.to(at::kDouble).square().sum(1, /*keepdim=*/true));
}

inline Tables window_tables(const at::Tensor& image, Method method, const DeviceKernels& k) {
  Tables t;
  k.tables(image, method, t.sat1, t.sat2);
  return t;
}

// Non-finite and overflowing inputs. The kernels' window sums are summed-area tables and their
// cross terms may be FFTs, both of which would spread one NaN/inf pixel far beyond the windows
// that contain it. So a call whose inputs are not all finite is computed on the inputs with
// those values set to 0, and then every window that touches one -- every window of a template
// that holds one -- is set to NaN (forward), resp. the gradient of every pixel of such a window
// and of such a template is NaN (backward). A float32 call whose products could overflow float32
// in the cross term (values up to ~1e9 for typical sizes are safe) is computed in float64 and
// rounded to float32 once, so scores beyond float32's range are +inf, never a clamped 0.
struct InputRange {
  bool finite = true;  // no NaN/inf in the image and the template (a NaN grad just propagates)
  bool wide = false;   // float32 whose cross terms could overflow: compute in float64
};

// max |x| in double (NaN when x holds NaN, inf for inf); 0 for an empty tensor.
inline at::Tensor abs_max(const at::Tensor& x) {
  if (x.numel() == 0) return at::zeros({}, x.options().dtype(at::kDouble));
  const auto [lo, hi] = at::aminmax(x);  // NaN when x holds one
  return at::maximum(lo.abs(), hi.abs()).to(at::kDouble);
}

inline InputRange input_range(const at::Tensor& image, const at::Tensor& templ, const at::Tensor* grad) {
  std::vector<at::Tensor> maxima{abs_max(image), abs_max(templ)};
  if (grad != nullptr) maxima.push_back(abs_max(*grad));
  const auto m = at::stack(maxima).cpu();  // one transfer (one synchronisation on a GPU)
  const double* v = m.data_ptr<double>();
  InputRange r;
  r.finite = std::isfinite(v[0]) && std::isfinite(v[1]);
  if (!r.finite || image.scalar_type() != at::kFloat) return r;
  // Bound of any float32 intermediate: a correlation (direct or FFT) of C*H*W values against
  // K*h*w taps, each product at most the largest pair of maxima (centring doubles a value).
  const double terms = 4.0 * static_cast<double>(image.size(1) + templ.size(0) + image.size(0)) *
                       static_cast<double>(image.size(2) * image.size(3)) *
                       static_cast<double>(templ.size(2) * templ.size(3));
  double pair = v[0] * v[1];
  if (grad != nullptr && std::isfinite(v[2])) pair = std::max({pair, v[0] * v[2], v[1] * v[2]});
  r.wide = pair * terms > 1e30;
  return r;
}

// [N, 1, Ho, Wo] bool: the windows of `image` that hold a NaN/inf value in any channel.
inline at::Tensor nonfinite_windows(const at::Tensor& image, int64_t h, int64_t w) {
  const auto bad = image.isfinite().logical_not().any(1, /*keepdim=*/true);
  return box_sums(summed_area_table(bad), h, w) > 0.5;
}

// [1, K, 1, 1] bool: the templates that hold a NaN/inf value.
inline at::Tensor nonfinite_templates(const at::Tensor& templ) {
  return templ.isfinite().logical_not().flatten(1).any(1).view({1, templ.size(0), 1, 1});
}

inline at::Tensor finite_part(const at::Tensor& x) {
  return at::nan_to_num(x, 0.0, 0.0, 0.0);
}

inline at::Tensor forward(const at::Tensor& image_in, const at::Tensor& templ_in, const std::string& method_name,
                          const DeviceKernels& k);

// forward, for a call whose inputs are not all finite or may overflow float32 (see InputRange).
inline at::Tensor forward_special(const at::Tensor& image, const at::Tensor& templ, const std::string& method,
                                  const InputRange& range, const DeviceKernels& k) {
  if (range.finite) return forward(image.to(at::kDouble), templ.to(at::kDouble), method, k).to(image.scalar_type());
  auto out = forward(finite_part(image), finite_part(templ), method, k);
  const auto bad = nonfinite_windows(image, templ.size(2), templ.size(3)).logical_or(nonfinite_templates(templ));
  return out.masked_fill_(bad, std::numeric_limits<double>::quiet_NaN());
}

inline at::Tensor forward(const at::Tensor& image_in, const at::Tensor& templ_in, const std::string& method_name,
                          const DeviceKernels& k) {
  const Method method = parse_method(method_name);
  const InputRange range = input_range(image_in, templ_in, nullptr);
  if (!range.finite || range.wide) return forward_special(image_in, templ_in, method_name, range, k);
  const auto image = image_in.contiguous();
  const int64_t h = templ_in.size(2), w = templ_in.size(3);
  const auto prepared = prepare_template(templ_in, method, centred_cross(method));
  auto out = xcorr(image, prepared.used, k);
  if (out.numel() == 0) return out;
  k.epilogue(out, image, prepared.stats, prepared.rho, method, h, w);
  return out;
}

// Gradients of sum(grad * score) with respect to image and templ.
inline std::tuple<at::Tensor, at::Tensor> backward(const at::Tensor& grad_in, const at::Tensor& image_in,
                                                   const at::Tensor& templ_in, const std::string& method_name,
                                                   const DeviceKernels& k) {
  const Method method = parse_method(method_name);
  const auto image = image_in.contiguous();
  const auto grad = grad_in.contiguous();
  const int64_t n = image.size(0), c = image.size(1), kk = templ_in.size(0);
  const int64_t h = templ_in.size(2), w = templ_in.size(3);
  const int64_t oh = image.size(2) - h + 1, ow = image.size(3) - w + 1;
  TORCH_CHECK(grad.dim() == 4 && grad.size(0) == n && grad.size(1) == kk && grad.size(2) == oh && grad.size(3) == ow,
              "match_template_backward: grad must be [N, K, H-h+1, W-w+1] = [", n, ", ", kk, ", ", oh, ", ", ow,
              "], got ", grad.sizes());
  check_same(grad, image, "match_template_backward", "grad", "image");
  if (n * kk * oh * ow == 0 || c == 0) return {at::zeros_like(image_in), at::zeros_like(templ_in)};
  const InputRange range = input_range(image, templ_in, &grad);
  if (range.wide) {
    const auto [gi, gt] =
        backward(grad.to(at::kDouble), image.to(at::kDouble), templ_in.to(at::kDouble), method_name, k);
    return {gi.to(image_in.scalar_type()), gt.to(templ_in.scalar_type())};
  }
  if (!range.finite) {
    // Non-finite image or template (a NaN/inf grad just propagates): the gradient of the finite
    // part, NaN on every pixel of a window that touches a non-finite value and on every template
    // with such a window.
    auto [gi, gt] = backward(grad, finite_part(image), finite_part(templ_in), method_name, k);
    const auto bad = nonfinite_windows(image, h, w).logical_or(nonfinite_templates(templ_in));  // [N|1, K|1, ., .]
    const auto windows = bad.expand({n, kk, oh, ow});
    const auto pixels = box_sums_adjoint(windows.any(1, /*keepdim=*/true).to(at::kDouble), h, w) > 0.5;
    const double nan = std::numeric_limits<double>::quiet_NaN();
    gi.masked_fill_(pixels, nan);
    gt.masked_fill_(windows.flatten(2).any(2).any(0).view({kk, 1, 1, 1}), nan);
    return {gi, gt};
  }

  const auto prepared = prepare_template(templ_in, method, /*centre=*/false);
  const auto cross = xcorr(image, prepared.used, k);
  const auto tables = window_tables(image, method, k);
  auto d_cross = at::empty_like(cross);
  auto d_window = at::empty({n, 1, oh, ow}, image.options().dtype(at::kDouble));
  const auto d_templ =
      k.partials(grad, cross, tables.sat1, tables.sat2, prepared.stats, prepared.rho, method, h, w, d_cross, d_window)
          .sum(0);

  // Image: the adjoint correlation with the (flipped) template, plus the window statistics' terms
  // d S2 / d f = 2 f and, for ncc, d (sum_c S1_c^2 / m) / d f_c = 2 S1_c / m.
  const auto flipped = prepared.used.flip({2, 3}).transpose(0, 1);
  const auto padded = at::constant_pad_nd(d_cross, {w - 1, w - 1, h - 1, h - 1}, 0.0);
  auto grad_image = xcorr(padded, flipped, k).to(at::kDouble);
  if (needs_energy(method)) {
    grad_image.add_(image.to(at::kDouble) * box_sums_adjoint(d_window, h, w), 2.0);
    if (method == Method::kNcc) {
      const auto mean_c = box_sums(tables.sat1, h, w) / static_cast<double>(h * w);
      grad_image.sub_(box_sums_adjoint(d_window * mean_c, h, w), 2.0);
    }
  }

  // Template: correlation of the image with d_cross (the weight gradient of the cross term),
  // projected onto zero-mean templates where the cross term uses the centred template, plus
  // d G2 / d g = 2 g, d V_g / d g = 2 (g - mean_c g).
  auto grad_templ = xcorr(image.transpose(0, 1), d_cross.transpose(0, 1), k).transpose(0, 1).to(at::kDouble);
  if (zero_mean_template(method)) grad_templ = grad_templ - grad_templ.mean({2, 3}, /*keepdim=*/true);
  if (needs_energy(method)) grad_templ.add_(prepared.used.to(at::kDouble) * d_templ.view({kk, 1, 1, 1}), 2.0);
  return {grad_image.to(image_in.scalar_type()).contiguous(), grad_templ.to(templ_in.scalar_type()).contiguous()};
}

}  // namespace match
}  // namespace perceptual_ext
