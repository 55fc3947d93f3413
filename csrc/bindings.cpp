// Python module perceptual_ext._C: loading it registers the operators; build_info() reports
// how this copy was built.
#include <ATen/Parallel.h>
#include <torch/extension.h>

#include <string>

#include "host/match_template_plan.h"

#ifndef PERCEPTUAL_EXT_VERSION
#define PERCEPTUAL_EXT_VERSION "unknown"
#endif

#ifdef PERCEPTUAL_EXT_WITH_CUDA
namespace perceptual_ext {
int cuda_runtime_version();  // csrc/cuda/info.cu
}
#endif

namespace {

std::string cpu_flags() {
  std::string flags;
  auto add = [&flags](const char* name) {
    if (!flags.empty()) flags += ",";
    flags += name;
  };
#ifdef __SSE4_2__
  add("sse4.2");
#endif
#ifdef __AVX__
  add("avx");
#endif
#ifdef __AVX2__
  add("avx2");
#endif
#ifdef __FMA__
  add("fma");
#endif
#ifdef __AVX512F__
  add("avx512f");
#endif
#ifdef __ARM_NEON
  add("neon");
#endif
  return flags;
}

pybind11::dict build_info() {
  pybind11::dict info;
  info["version"] = PERCEPTUAL_EXT_VERSION;
  info["torch_version"] = TORCH_VERSION;
#ifdef PERCEPTUAL_EXT_WITH_CUDA
  info["cuda_compiled"] = true;
  const int v = perceptual_ext::cuda_runtime_version();
  info["cuda_version"] = std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
  info["cuda_arch_list"] = PERCEPTUAL_EXT_CUDA_ARCHS;
#else
  info["cuda_compiled"] = false;
  info["cuda_version"] = pybind11::none();
  info["cuda_arch_list"] = pybind11::none();
#endif
#ifdef _OPENMP
  info["openmp"] = true;
#else
  info["openmp"] = false;
#endif
  info["num_threads"] = at::get_num_threads();
  info["parallel_backend"] = at::get_parallel_info();
  info["cpu_flags"] = cpu_flags();
  return info;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "perceptual_ext compiled kernels";
  m.def("build_info", &build_info, "How this extension was built");
  m.def("release_fft_workspace", &perceptual_ext::match::release_fft_workspace,
        "Frees the transform buffers that match_template keeps between calls on the calling thread");
}
