// CUDA runtime version the extension was compiled against, for build_info().
#include <cuda_runtime_api.h>

namespace perceptual_ext {
int cuda_runtime_version() {
  return CUDART_VERSION;
}
}  // namespace perceptual_ext
