// Convolution and transposed convolution ops: shape checks, dispatch to kernels/conv.h, backward.
#include <stdexcept>
#include <string>
#include <utility>

#include "engine/dispatch.h"
#include "engine/ops.h"
#include "kernels/conv.h"

namespace pw {
namespace {

[[noreturn]] void fail(const char* op, const std::string& why) {
  throw std::invalid_argument(std::string(op) + ": " + why);
}

// Geometry of conv (transposed = false) or conv_transpose from x, w and the scalars; checks
// ranks, dtypes, devices, channel counts, bias shape and that the output is not empty.
kernels::ConvGeom conv_geom(const char* op, const Var& xv, const Var& wv, const Var& bv, int stride, int padding,
                            bool transposed) {
  if (!xv || !wv) fail(op, "x and w must be given");
  const Tensor& x = xv->value;
  const Tensor& w = wv->value;
  if (x.ndim() != 4 && x.ndim() != 5)
    fail(op, "x must be N,C,H,W or N,C,D,H,W, got " + shape_str(x.shape()));
  if (w.ndim() != x.ndim())
    fail(op, "w must have the rank of x " + shape_str(x.shape()) + ", got " + shape_str(w.shape()));
  if (x.dtype() != DType::f32 || w.dtype() != DType::f32) fail(op, "x and w must be f32");
  if (w.device() != x.device()) fail(op, "x and w must be on the same device");
  if (stride < 1) fail(op, "stride must be >= 1, got " + std::to_string(stride));
  if (padding < 0) fail(op, "padding must be >= 0, got " + std::to_string(padding));
  const int sd = x.ndim() - 2;  // spatial dims
  kernels::ConvGeom g;
  g.ndim = sd;
  g.n = x.dim(0);
  g.cin = x.dim(1);
  g.cout = transposed ? w.dim(1) : w.dim(0);
  const int64_t w_cin = transposed ? w.dim(0) : w.dim(1);
  if (w_cin != g.cin)
    fail(op, std::string("w ") + shape_str(w.shape()) + " expects " + std::to_string(w_cin) +
                 " input channels, x " + shape_str(x.shape()) + " has " + std::to_string(g.cin));
  for (int i = 0; i < sd; ++i) {
    const int a = 3 - sd + i;  // 2D fills H, W; D stays 1
    g.in[a] = x.dim(2 + i);
    if (g.in[a] < 1) fail(op, "x " + shape_str(x.shape()) + " has an empty spatial dimension");
    g.k[a] = static_cast<int>(w.dim(2 + i));
    g.stride[a] = stride;
    g.pad[a] = padding;
    g.out[a] = transposed ? (g.in[a] - 1) * stride - 2 * padding + g.k[a]
                          : (g.in[a] + 2 * padding - g.k[a]) / stride + 1;
    if (g.k[a] < 1 || g.out[a] < 1 || (!transposed && g.in[a] + 2 * padding < g.k[a]))
      fail(op, "kernel " + shape_str(w.shape()) + " with stride " + std::to_string(stride) + ", padding " +
                   std::to_string(padding) + " gives an empty output for x " + shape_str(x.shape()));
  }
  if (bv) {
    const Tensor& b = bv->value;
    if (b.ndim() != 1 || b.dim(0) != g.cout || b.dtype() != DType::f32)
      fail(op, "bias must be f32 of shape [" + std::to_string(g.cout) + "], got " + shape_str(b.shape()));
    if (b.device() != x.device()) fail(op, "bias must be on the device of x");
  }
  return g;
}

Shape out_shape(const kernels::ConvGeom& g) {
  Shape s{g.n, g.cout};
  for (int a = 3 - g.ndim; a < 3; ++a) s.push_back(g.out[a]);
  return s;
}

// "N8 16->32 32x32x32 k3 s1 p1": a convolution's shape for the op profile (engine/profile.h).
std::string conv_str(const kernels::ConvGeom& g) {
  std::string s = "N" + std::to_string(g.n) + " " + std::to_string(g.cin) + "->" + std::to_string(g.cout) + " ";
  for (int a = 3 - g.ndim; a < 3; ++a) s += std::to_string(g.in[a]) + (a < 2 ? "x" : "");
  return s + " k" + std::to_string(g.k[2]) + " s" + std::to_string(g.stride[2]) + " p" + std::to_string(g.pad[2]);
}

Var conv_impl(const char* op, const Var& x, const Var& w, const Var& b, int stride, int padding, bool transposed) {
  const kernels::ConvGeom g = conv_geom(op, x, w, b, stride, padding, transposed);
  ProfileDetail detail([&] { return conv_str(g); });
  const Device dev = x->value.device();
  Tensor y = Tensor::empty(out_shape(g), DType::f32, dev);
  const float* bp = b ? b->value.f32() : nullptr;
  if (transposed)
    PW_DISPATCH(dev, conv_transpose_forward, g, x->value.f32(), w->value.f32(), bp, y.f32());
  else
    PW_DISPATCH(dev, conv_forward, g, x->value.f32(), w->value.f32(), bp, y.f32());
  return record(y, {x, w, b}, [g, dev, transposed](Node& self) {
    ProfileDetail detail([&] { return conv_str(g); });
    Node& xn = *self.parents[0];
    Node& wn = *self.parents[1];
    Node* bn = self.parents[2] && self.parents[2]->requires_grad ? self.parents[2].get() : nullptr;
    const float* dy = self.grad.f32();
    Tensor dx = xn.requires_grad ? Tensor::empty_like(xn.value) : Tensor();
    Tensor dw = wn.requires_grad ? Tensor::empty_like(wn.value) : Tensor();
    Tensor db = bn ? Tensor::empty_like(bn->value) : Tensor();
    float* dxp = dx.defined() ? dx.f32() : nullptr;
    float* dwp = dw.defined() ? dw.f32() : nullptr;
    float* dbp = db.defined() ? db.f32() : nullptr;
    if (transposed) {
      PW_DISPATCH(dev, conv_transpose_backward, g, xn.value.f32(), dy, wn.value.f32(), dxp, dwp, dbp);
    } else {
      if (dxp) PW_DISPATCH(dev, conv_backward_data, g, dy, wn.value.f32(), dxp);
      if (dwp) PW_DISPATCH(dev, conv_backward_weight, g, xn.value.f32(), dy, dwp);
      if (dbp) PW_DISPATCH(dev, conv_backward_bias, g, dy, dbp);
    }
    if (dxp) accumulate_owned(xn, std::move(dx));
    if (dwp) accumulate_owned(wn, std::move(dw));
    if (dbp) accumulate_owned(*bn, std::move(db));
  });
}

}  // namespace

Var conv(const Var& x, const Var& w, const Var& b, int stride, int padding) {
  return conv_impl("conv", x, w, b, stride, padding, false);
}

Var conv_transpose(const Var& x, const Var& w, const Var& b, int stride) {
  return conv_impl("conv_transpose", x, w, b, stride, 0, true);
}

}  // namespace pw
