// Error checking for every CUDA / cuBLAS / cuDNN call (PW_CUDA_CHECK, PW_CUDNN_CHECK,
// PW_CUBLAS_CHECK): defined once, in the kernels layer, for both layers.
#pragma once
#include "kernels/cuda/check.h"
