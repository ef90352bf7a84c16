// Pooling and upsampling ops: shape checks, dispatch to kernels/pool.h, backward.
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>

#include "engine/dispatch.h"
#include "engine/ops.h"
#include "kernels/pool.h"

namespace pw {
namespace {

[[noreturn]] void fail(const char* op, const std::string& why) {
  throw std::invalid_argument(std::string(op) + ": " + why);
}

// Geometry of a per-(n, c) spatial op on x with the given output size rule (checked non-empty).
kernels::PoolGeom plane_geom(const char* op, const Var& xv) {
  if (!xv) fail(op, "x must be given");
  const Tensor& x = xv->value;
  if (x.ndim() != 4 && x.ndim() != 5) fail(op, "x must be N,C,H,W or N,C,D,H,W, got " + shape_str(x.shape()));
  if (x.dtype() != DType::f32) fail(op, "x must be f32");
  kernels::PoolGeom g;
  g.ndim = x.ndim() - 2;
  g.nc = x.dim(0) * x.dim(1);
  for (int i = 0; i < g.ndim; ++i) g.in[3 - g.ndim + i] = x.dim(2 + i);
  for (int a = 0; a < 3; ++a) g.out[a] = g.in[a];
  return g;
}

Shape out_shape(const Tensor& x, const kernels::PoolGeom& g) {
  Shape s{x.dim(0), x.dim(1)};
  for (int a = 3 - g.ndim; a < 3; ++a) s.push_back(g.out[a]);
  return s;
}

kernels::PoolGeom pool_geom(const char* op, const Var& x, int kernel, int stride) {
  kernels::PoolGeom g = plane_geom(op, x);
  if (kernel < 1 || stride < 1)
    fail(op, "kernel and stride must be >= 1, got kernel " + std::to_string(kernel) + ", stride " +
                 std::to_string(stride));
  for (int a = 3 - g.ndim; a < 3; ++a) {
    if (g.in[a] < kernel)
      fail(op, "kernel " + std::to_string(kernel) + " is larger than x " + shape_str(x->value.shape()));
    g.k[a] = kernel;
    g.stride[a] = stride;
    g.out[a] = (g.in[a] - kernel) / stride + 1;
  }
  return g;
}

}  // namespace

Var max_pool(const Var& x, int kernel, int stride) {
  const kernels::PoolGeom g = pool_geom("max_pool", x, kernel, stride);
  if (g.in_vol() > std::numeric_limits<int32_t>::max())
    fail("max_pool", "a plane of x " + shape_str(x->value.shape()) + " has more than 2^31 voxels");
  const Device dev = x->value.device();
  const Shape ys = out_shape(x->value, g);
  Tensor y = Tensor::empty(ys, DType::f32, dev);
  Tensor argmax = Tensor::empty(ys, DType::i32, dev);
  PW_DISPATCH(dev, max_pool_forward, g, x->value.f32(), y.f32(), argmax.i32());
  return record(y, {x}, [g, dev, argmax](Node& self) {
    Node& xn = *self.parents[0];
    Tensor dx = Tensor::empty_like(xn.value);
    PW_DISPATCH(dev, max_pool_backward, g, self.grad.f32(), argmax.i32(), dx.f32());
    accumulate_owned(xn, std::move(dx));
  });
}

Var avg_pool(const Var& x, int kernel, int stride) {
  const kernels::PoolGeom g = pool_geom("avg_pool", x, kernel, stride);
  const Device dev = x->value.device();
  Tensor y = Tensor::empty(out_shape(x->value, g), DType::f32, dev);
  PW_DISPATCH(dev, avg_pool_forward, g, x->value.f32(), y.f32());
  return record(y, {x}, [g, dev](Node& self) {
    Node& xn = *self.parents[0];
    Tensor dx = Tensor::empty_like(xn.value);
    PW_DISPATCH(dev, avg_pool_backward, g, self.grad.f32(), dx.f32());
    accumulate_owned(xn, std::move(dx));
  });
}

Var upsample(const Var& x, int factor, UpsampleMode mode, bool align_corners) {
  kernels::PoolGeom g = plane_geom("upsample", x);
  if (factor < 1) fail("upsample", "factor must be >= 1, got " + std::to_string(factor));
  for (int a = 3 - g.ndim; a < 3; ++a) g.out[a] = g.in[a] * factor;
  const Device dev = x->value.device();
  const bool linear = mode == UpsampleMode::linear;
  Tensor y = Tensor::empty(out_shape(x->value, g), DType::f32, dev);
  if (linear)
    PW_DISPATCH(dev, upsample_linear_forward, g, align_corners, x->value.f32(), y.f32());
  else
    PW_DISPATCH(dev, upsample_nearest_forward, g, x->value.f32(), y.f32());
  return record(y, {x}, [g, dev, linear, align_corners](Node& self) {
    Node& xn = *self.parents[0];
    Tensor dx = Tensor::empty_like(xn.value);
    if (linear)
      PW_DISPATCH(dev, upsample_linear_backward, g, align_corners, self.grad.f32(), dx.f32());
    else
      PW_DISPATCH(dev, upsample_nearest_backward, g, self.grad.f32(), dx.f32());
    accumulate_owned(xn, std::move(dx));
  });
}

}  // namespace pw
