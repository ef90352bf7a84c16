// PW_HD marks per-voxel math shared by the CPU and CUDA bodies: __host__ __device__ under nvcc,
// nothing in plain C++.
#pragma once

#ifndef PW_HD
#if defined(__CUDACC__)
#define PW_HD __host__ __device__
#else
#define PW_HD
#endif
#endif
