// Every operator schema of the library, in one place. Kernels register beside themselves
// (csrc/cpu/<op>.cpp, csrc/cuda/<op>.cu); autograd and fake kernels live in perceptual_ext/ops/.
#include <torch/library.h>

TORCH_LIBRARY(perceptual_ext, m) {
  // features [N, C, L] -> [N, C, C]
  m.def("gram(Tensor features, bool normalize) -> Tensor");
  // grad [N, C, C], features [N, C, L] -> [N, C, L]
  m.def("gram_backward(Tensor grad, Tensor features, bool normalize) -> Tensor");

  // Patch random Fourier features: x [N, C, H, W], weight [F, C, P, P], bias [F] -> pooled
  // cos(conv(reflect_pad(x)) + b) [N, F, h', w'] over window x window windows, stride `stride`.
  m.def("rff_patch_features(Tensor x, Tensor weight, Tensor bias, int window, int stride) -> Tensor");
  // grad [N, F, h', w'] -> d x [N, C, H, W] (weight and bias are fixed random features)
  m.def(
      "rff_patch_features_backward(Tensor grad, Tensor x, Tensor weight, Tensor bias, int window, "
      "int stride) -> Tensor");

  // S-CNN (fused): x [N, C_in, H, W], first_weight [C, C_in, P, P], first_bias [C], weights [D, C, C],
  // biases [D, C] -> (pooled [N, C, h', w'], ReLU masks [N, D+1, Hc*Wc, ceil(C/32)] int32 or [0])
  m.def(
      "scnn_features(Tensor x, Tensor first_weight, Tensor first_bias, Tensor weights, Tensor biases, "
      "int window, int stride, bool patch_norm, bool save_masks) -> (Tensor, Tensor)");
  // grad [N, C, h', w'] -> d x [N, C_in, H, W]
  m.def(
      "scnn_features_backward(Tensor grad, Tensor x, Tensor first_weight, Tensor weights, Tensor masks, "
      "int window, int stride, bool patch_norm) -> Tensor");

  // Template matching. image [N, C, H, W], templ [K, C, h, w] -> [N, K, H-h+1, W-w+1];
  // method: corr | zero_mean_corr | ssd | ncc | ssd_normed | corr_normed
  m.def("match_template(Tensor image, Tensor templ, str method) -> Tensor");
  // grad [N, K, H-h+1, W-w+1] -> (grad_image, grad_templ)
  m.def("match_template_backward(Tensor grad, Tensor image, Tensor templ, str method) -> (Tensor, Tensor)");

  // LPIPS head: a, b [N, C, H, W], weight [C] -> [N, 1, H, W] = sum_c w_c (a_c/|a| - b_c/|b|)^2,
  // norms over channels per pixel (lpips v0.1, eps 1e-10 added to each norm)
  m.def("lpips_layer(Tensor a, Tensor b, Tensor weight) -> Tensor");
  // grad [N, 1, H, W] -> (grad_a, grad_b), each [N, C, H, W], or [0] where need_a / need_b is false
  m.def(
      "lpips_layer_backward(Tensor grad, Tensor a, Tensor b, Tensor weight, bool need_a, bool need_b) "
      "-> (Tensor, Tensor)");

  // Colorization cross-entropy with soft-encoded targets: logits [N, Q, H, W], ab [N, 2, H, W],
  // bins [Q, 2] on a square grid, weights [Q] (or [0]: no rebalancing) -> (loss [N, H, W],
  // log-sum-exp of the logits [N, H, W], kept for the backward pass)
  m.def(
      "soft_encoded_cross_entropy(Tensor logits, Tensor ab, Tensor bins, Tensor weights, int neighbors, "
      "float sigma) -> (Tensor, Tensor)");
  // grad [N, H, W] -> d logits [N, Q, H, W]
  m.def(
      "soft_encoded_cross_entropy_backward(Tensor grad, Tensor logits, Tensor ab, Tensor bins, Tensor weights, "
      "Tensor lse, int neighbors, float sigma) -> Tensor");
}
