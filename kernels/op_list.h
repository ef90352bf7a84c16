// The kernel op list: every per-backend kernel function, named once with its signature.
//
// Each family header (kernels/<family>.h) keeps its contract comments and defines its part of the
// list once, as an X-macro of entries X(return type, name, (parameters)), one per line (each line but
// the last ending in a backslash; the contract comments inside as /* ... */):
//
//   #define PW_KERNELS_ELEMENTWISE(X)
//     /* y = max(x, 0);  dx = x > 0 ? dy : 0 */
//     X(void, relu_forward, (const float* x, float* y, int64_t n))
//     ...
//
// and expands it in both backends' namespaces, the CUDA one only under PW_HAVE_CUDA:
//
//   namespace pw::kernels::cpu { PW_KERNELS_ELEMENTWISE(PW_DECLARE_KERNEL) }
//   #ifdef PW_HAVE_CUDA
//   namespace pw::kernels::cuda { PW_KERNELS_ELEMENTWISE(PW_DECLARE_KERNEL) }
//   #endif
//
// so the CPU body (kernels/cpu/<family>.cpp) and the CUDA body (kernels/cuda/<family>.cu) can never
// drift apart, and engine/dispatch.h's PW_DISPATCH(device, fn, ...) finds the same signature on both
// sides. An overloaded kernel (gather_affine for several source types) has one entry per overload.
// Shared, backend-independent helpers (kernels::undersampling, kernels::smooth_plan) are ordinary
// declarations outside the list.
//
// PW_KERNELS_ALL(X) is the whole list, family by family; expanding it needs every family header
// (tests/engine/test_op_list.cpp does, and checks that each entry has a body on every backend built).
#pragma once

// One declaration: X(ret, name, (params)) -> `ret name(params);`
#define PW_DECLARE_KERNEL(ret, name, params) ret name params;

#define PW_KERNELS_ALL(X)     \
  PW_KERNELS_CONV(X)          \
  PW_KERNELS_POOL(X)          \
  PW_KERNELS_NORM(X)          \
  PW_KERNELS_ELEMENTWISE(X)   \
  PW_KERNELS_LOSS(X)          \
  PW_KERNELS_CANDIDATE(X)     \
  PW_KERNELS_OPTIM(X)         \
  PW_KERNELS_GATHER(X)        \
  PW_KERNELS_SCATTER(X)       \
  PW_KERNELS_SMOOTH(X)
