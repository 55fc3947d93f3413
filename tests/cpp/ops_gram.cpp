// The gram operators called through the dispatcher from C++, against ATen's bmm.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include "check.h"

namespace {
at::Tensor call_gram(const at::Tensor& x, bool normalize) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("perceptual_ext::gram", "")
                       .typed<at::Tensor(const at::Tensor&, bool)>();
  return op.call(x, normalize);
}
at::Tensor call_gram_backward(const at::Tensor& g, const at::Tensor& x, bool normalize) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("perceptual_ext::gram_backward", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&, bool)>();
  return op.call(g, x, normalize);
}
}  // namespace

int main() {
  at::manual_seed(0);
  for (int64_t c : {1, 3, 64, 200, 300}) {
    const auto x = at::randn({2, c, 37}, at::kDouble);
    const auto expected = at::bmm(x, x.transpose(1, 2)) / static_cast<double>(c * 37);
    const auto got = call_gram(x, true);
    CHECK(at::allclose(got, expected, 1e-12, 1e-14));
    CHECK(at::equal(got, got.transpose(1, 2)));
    CHECK(at::allclose(call_gram(x, false), expected * static_cast<double>(c * 37), 1e-12, 1e-12));

    const auto grad = at::randn({2, c, c}, at::kDouble);
    const auto expected_dx = at::bmm(grad + grad.transpose(1, 2), x) / static_cast<double>(c * 37);
    CHECK(at::allclose(call_gram_backward(grad, x, true), expected_dx, 1e-12, 1e-14));
  }
  // A transposed (channels-last-like) float input.
  const auto xt = at::randn({3, 50, 150}, at::kFloat).transpose(1, 2);
  CHECK(at::allclose(call_gram(xt, true), at::bmm(xt, xt.transpose(1, 2)) / (150.0 * 50.0), 1e-5, 1e-6));
  // Empty batch and zero-length features.
  CHECK(call_gram(at::randn({0, 4, 5}), true).sizes() == at::IntArrayRef({0, 4, 4}));
  CHECK(at::equal(call_gram(at::randn({2, 4, 0}), true), at::zeros({2, 4, 4})));
  // Bad rank is rejected with a message naming the argument.
  bool threw = false;
  try {
    call_gram(at::randn({4, 5}), true);
  } catch (const c10::Error& e) {
    threw = std::string(e.what()).find("features must be [N, C, L]") != std::string::npos;
  }
  CHECK(threw);
  return check::finish("ops_gram");
}
