// Every operator schema of the library, in one place. Kernels register beside themselves
// (csrc/cpu/<op>.cpp, csrc/cuda/<op>.cu); autograd and fake kernels live in perceptual_ext/ops/.
#include <torch/library.h>

TORCH_LIBRARY(perceptual_ext, m) {
  // features [N, C, L] -> [N, C, C]
  m.def("gram(Tensor features, bool normalize) -> Tensor");
  // grad [N, C, C], features [N, C, L] -> [N, C, L]
  m.def("gram_backward(Tensor grad, Tensor features, bool normalize) -> Tensor");

  // Template matching. image [N, C, H, W], templ [K, C, h, w] -> [N, K, H-h+1, W-w+1];
  // method: corr | zero_mean_corr | ssd | ncc | ssd_normed | corr_normed
  m.def("match_template(Tensor image, Tensor templ, str method) -> Tensor");
  // grad [N, K, H-h+1, W-w+1] -> (grad_image, grad_templ)
  m.def("match_template_backward(Tensor grad, Tensor image, Tensor templ, str method) -> (Tensor, Tensor)");
}
