// Elementwise ops, activations, channel concat/slice and reductions: shape checks, dispatch to
// kernels/elementwise.h, and the backward of each.
#include <stdexcept>
#include <string>
#include <utility>

#include "engine/dispatch.h"
#include "engine/ops.h"
#include "kernels/elementwise.h"

namespace pw {
namespace {

void check_f32(const Var& x, const char* op) {
  if (!x || !x->value.defined()) throw std::invalid_argument(std::string(op) + ": undefined input");
  if (x->value.dtype() != DType::f32)
    throw std::invalid_argument(std::string(op) + ": expected f32, got " + x->value.str());
}

void check_pair(const Var& a, const Var& b, const char* op) {
  check_f32(a, op);
  check_f32(b, op);
  check_same_shape(a->value, b->value, op);
  if (a->value.device() != b->value.device())
    throw std::invalid_argument(std::string(op) + ": inputs on different devices (" + a->value.str() + ", " +
                                b->value.str() + ")");
}

// [outer = N][C][inner = spatial] view of a tensor with at least 2 dimensions.
struct ChannelView {
  int64_t outer, channels, inner;
};
ChannelView channel_view(const Tensor& t, const char* op) {
  if (t.ndim() < 2)
    throw std::invalid_argument(std::string(op) + ": expected N,C,... (at least 2 dimensions), got shape " +
                                shape_str(t.shape()));
  int64_t inner = 1;
  for (int i = 2; i < t.ndim(); ++i) inner *= t.dim(i);
  return {t.dim(0), t.dim(1), inner};
}

}  // namespace

Var relu(const Var& x) {
  check_f32(x, "relu");
  Tensor y = Tensor::empty_like(x->value);
  PW_DISPATCH(y.device(), relu_forward, x->value.f32(), y.f32(), y.numel());
  return record(y, {x}, [](Node& self) {
    Node& x = *self.parents[0];
    Tensor dx = Tensor::empty_like(x.value);
    PW_DISPATCH(dx.device(), relu_backward, x.value.f32(), self.grad.f32(), dx.f32(), dx.numel());
    accumulate_owned(x, std::move(dx));
  });
}

Var leaky_relu(const Var& x, float slope) {
  check_f32(x, "leaky_relu");
  Tensor y = Tensor::empty_like(x->value);
  PW_DISPATCH(y.device(), leaky_relu_forward, x->value.f32(), y.f32(), y.numel(), slope);
  return record(y, {x}, [slope](Node& self) {
    Node& x = *self.parents[0];
    Tensor dx = Tensor::empty_like(x.value);
    PW_DISPATCH(dx.device(), leaky_relu_backward, x.value.f32(), self.grad.f32(), dx.f32(), dx.numel(), slope);
    accumulate_owned(x, std::move(dx));
  });
}

Var sigmoid(const Var& x) {
  check_f32(x, "sigmoid");
  Tensor y = Tensor::empty_like(x->value);
  PW_DISPATCH(y.device(), sigmoid_forward, x->value.f32(), y.f32(), y.numel());
  return record(y, {x}, [](Node& self) {
    Node& x = *self.parents[0];
    Tensor dx = Tensor::empty_like(x.value);
    PW_DISPATCH(dx.device(), sigmoid_backward, self.value.f32(), self.grad.f32(), dx.f32(), dx.numel());
    accumulate_owned(x, std::move(dx));
  });
}

Var softmax(const Var& x) {
  check_f32(x, "softmax");
  ChannelView v = channel_view(x->value, "softmax");
  Tensor y = Tensor::empty_like(x->value);
  PW_DISPATCH(y.device(), softmax_forward, x->value.f32(), y.f32(), v.outer, v.channels, v.inner);
  return record(y, {x}, [v](Node& self) {
    Node& x = *self.parents[0];
    Tensor dx = Tensor::empty_like(x.value);
    PW_DISPATCH(dx.device(), softmax_backward, self.value.f32(), self.grad.f32(), dx.f32(), v.outer, v.channels,
                v.inner);
    accumulate_owned(x, std::move(dx));
  });
}

Var add(const Var& a, const Var& b) {
  check_pair(a, b, "add");
  Tensor y = Tensor::empty_like(a->value);
  PW_DISPATCH(y.device(), add, a->value.f32(), b->value.f32(), y.f32(), y.numel());
  return record(y, {a, b}, [](Node& self) {
    for (auto& p : self.parents)
      if (p->requires_grad) accumulate(*p, self.grad);
  });
}

Var mul(const Var& a, const Var& b) {
  check_pair(a, b, "mul");
  Tensor y = Tensor::empty_like(a->value);
  PW_DISPATCH(y.device(), mul, a->value.f32(), b->value.f32(), y.f32(), y.numel());
  return record(y, {a, b}, [](Node& self) {
    Node& a = *self.parents[0];
    Node& b = *self.parents[1];
    if (a.requires_grad) {
      Tensor da = Tensor::empty_like(a.value);
      PW_DISPATCH(da.device(), mul, self.grad.f32(), b.value.f32(), da.f32(), da.numel());
      accumulate_owned(a, std::move(da));
    }
    if (b.requires_grad) {
      Tensor db = Tensor::empty_like(b.value);
      PW_DISPATCH(db.device(), mul, self.grad.f32(), a.value.f32(), db.f32(), db.numel());
      accumulate_owned(b, std::move(db));
    }
  });
}

Var scale(const Var& x, float s) {
  check_f32(x, "scale");
  Tensor y = Tensor::empty_like(x->value);
  PW_DISPATCH(y.device(), scale, x->value.f32(), y.f32(), y.numel(), s);
  return record(y, {x}, [s](Node& self) {
    Node& x = *self.parents[0];
    Tensor dx = Tensor::empty_like(x.value);
    PW_DISPATCH(dx.device(), scale, self.grad.f32(), dx.f32(), dx.numel(), s);
    accumulate_owned(x, std::move(dx));
  });
}

Var concat(const std::vector<Var>& xs) {
  if (xs.empty()) throw std::invalid_argument("concat: no inputs");
  for (auto& x : xs) check_f32(x, "concat");
  const Tensor& first = xs[0]->value;
  ChannelView v0 = channel_view(first, "concat");
  int64_t channels = 0;
  for (auto& x : xs) {
    const Tensor& t = x->value;
    ChannelView v = channel_view(t, "concat");
    bool same = t.ndim() == first.ndim() && v.outer == v0.outer && t.device() == first.device();
    for (int i = 2; same && i < t.ndim(); ++i) same = t.dim(i) == first.dim(i);
    if (!same)
      throw std::invalid_argument("concat: inputs must match except in channels, got " + first.str() + " and " +
                                  t.str());
    channels += v.channels;
  }
  Shape shape = first.shape();
  shape[1] = channels;
  Tensor y = Tensor::empty(shape, DType::f32, first.device());
  int64_t c0 = 0;
  for (auto& x : xs) {
    int64_t c = x->value.dim(1);
    PW_DISPATCH(y.device(), copy_channels, x->value.f32(), c, 0, y.f32(), channels, c0, c, v0.outer, v0.inner);
    c0 += c;
  }
  return record(y, xs, [channels, v0](Node& self) {
    int64_t c0 = 0;
    for (auto& p : self.parents) {
      int64_t c = p->value.dim(1);
      if (p->requires_grad) {
        Tensor dx = Tensor::empty_like(p->value);
        PW_DISPATCH(dx.device(), copy_channels, self.grad.f32(), channels, c0, dx.f32(), c, 0, c, v0.outer,
                    v0.inner);
        accumulate_owned(*p, std::move(dx));
      }
      c0 += c;
    }
  });
}

Var slice(const Var& x, int64_t begin, int64_t end) {
  check_f32(x, "slice");
  ChannelView v = channel_view(x->value, "slice");
  if (begin < 0 || end > v.channels || begin >= end)
    throw std::invalid_argument("slice: channels [" + std::to_string(begin) + ", " + std::to_string(end) +
                                ") out of range for shape " + shape_str(x->value.shape()));
  Shape shape = x->value.shape();
  shape[1] = end - begin;
  Tensor y = Tensor::empty(shape, DType::f32, x->value.device());
  PW_DISPATCH(y.device(), copy_channels, x->value.f32(), v.channels, begin, y.f32(), end - begin, 0, end - begin,
              v.outer, v.inner);
  return record(y, {x}, [v, begin, end](Node& self) {
    Node& x = *self.parents[0];
    Tensor dx = Tensor::zeros_like(x.value);
    PW_DISPATCH(dx.device(), copy_channels, self.grad.f32(), end - begin, 0, dx.f32(), v.channels, begin,
                end - begin, v.outer, v.inner);
    accumulate_owned(x, std::move(dx));
  });
}

Var sum(const Var& x) {
  check_f32(x, "sum");
  Tensor y = Tensor::empty({1}, DType::f32, x->value.device());
  PW_DISPATCH(y.device(), sum, x->value.f32(), x->value.numel(), y.f32());
  return record(y, {x}, [](Node& self) {
    Node& x = *self.parents[0];
    Tensor dx = Tensor::empty_like(x.value);
    PW_DISPATCH(dx.device(), broadcast_scalar, self.grad.f32(), 1.0f, dx.f32(), dx.numel());
    accumulate_owned(x, std::move(dx));
  });
}

Var mean(const Var& x) {
  check_f32(x, "mean");
  const int64_t n = x->value.numel();
  if (n == 0) throw std::invalid_argument("mean: empty input " + x->value.str());
  Tensor y = Tensor::empty({1}, DType::f32, x->value.device());
  PW_DISPATCH(y.device(), sum, x->value.f32(), n, y.f32());
  PW_DISPATCH(y.device(), scale, y.f32(), y.f32(), 1, 1.0f / static_cast<float>(n));
  return record(y, {x}, [n](Node& self) {
    Node& x = *self.parents[0];
    Tensor dx = Tensor::empty_like(x.value);
    PW_DISPATCH(dx.device(), broadcast_scalar, self.grad.f32(), 1.0f / static_cast<float>(n), dx.f32(), n);
    accumulate_owned(x, std::move(dx));
  });
}

}  // namespace pw
