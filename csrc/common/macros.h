// Portability macros shared by the CPU (.cpp) and CUDA (.cu) translation units.
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define PE_HOST_DEVICE __host__ __device__
#define PE_INLINE __forceinline__
#else
#define PE_HOST_DEVICE
#define PE_INLINE inline
#endif
