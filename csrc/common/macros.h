// Portability macros shared by the CPU (.cpp) and CUDA (.cu) translation units.
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define PE_HOST_DEVICE __host__ __device__
#define PE_INLINE __forceinline__
#else
#define PE_HOST_DEVICE
#define PE_INLINE inline
#endif

// Unroll the loop that follows where the compiler supports the pragma (nvcc); a no-op elsewhere.
#if defined(__CUDACC__) || defined(__HIPCC__)
#define PE_UNROLL _Pragma("unroll")
#else
#define PE_UNROLL
#endif
