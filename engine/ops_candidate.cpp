// Candidate-sampling cross entropy and the class decision of an embedded-class model: shape checks,
// dispatch to kernels/candidate.h, backward.
#include <stdexcept>
#include <string>
#include <utility>

#include "engine/dispatch.h"
#include "engine/ops.h"
#include "kernels/candidate.h"
#include "kernels/common/candidate_math.h"

namespace pw {
namespace {

// embedding C,m and bias C on the features' device, m within kMaxEmbeddingDim.
void check_embedding(const Tensor& E, const Tensor& b, int64_t m, Device dev, const char* op) {
  if (E.dtype() != DType::f32 || E.ndim() != 2 || E.dim(1) != m || E.device() != dev)
    throw std::invalid_argument(std::string(op) + ": embedding must be f32 [classes, " + std::to_string(m) + "] on " +
                                device_name(dev) + ", got " + E.str());
  if (b.dtype() != DType::f32 || b.shape() != Shape{E.dim(0)} || b.device() != dev)
    throw std::invalid_argument(std::string(op) + ": bias must be f32 [" + std::to_string(E.dim(0)) + "], got " +
                                b.str());
  if (m < 1 || m > kernels::common::kMaxEmbeddingDim)
    throw std::invalid_argument(std::string(op) + ": embedding dimension " + std::to_string(m) + " outside 1.." +
                                std::to_string(kernels::common::kMaxEmbeddingDim));
}

// Candidates i32 N,T,spatial: slot 0 in [-1, C), the others in [0, C) where slot 0 counts; checked
// on the host (a CUDA tensor is copied down) so that a bad index is the same error on every device.
void check_candidates(const Tensor& cand, const Shape& fshape, int64_t C, Device dev) {
  Shape want = fshape;
  want[1] = cand.defined() && cand.ndim() > 1 ? cand.dim(1) : 0;
  if (!cand.defined() || cand.dtype() != DType::i32 || cand.shape() != want || cand.device() != dev || want[1] < 1 ||
      want[1] > kernels::common::kMaxCandidateSlots)
    throw std::invalid_argument("candidate_cross_entropy: candidates must be i32 [N, T, spatial] like the features " +
                                shape_str(fshape) + " with 1 <= T <= " +
                                std::to_string(kernels::common::kMaxCandidateSlots) + ", got " +
                                (cand.defined() ? cand.str() : std::string("nothing")));
  const Tensor host = dev == Device::cpu ? cand : cand.cpu();
  const int32_t* c = host.i32();
  const int64_t N = want[0], T = want[1], S = host.numel() / (N * T);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t s = 0; s < S; ++s) {
      const int32_t truth = c[n * T * S + s];
      if (truth < -1 || truth >= C)
        throw std::invalid_argument("candidate_cross_entropy: class " + std::to_string(truth) + " outside [-1, " +
                                    std::to_string(C) + ")");
      for (int64_t t = 1; t < T && truth >= 0; ++t)
        if (c[(n * T + t) * S + s] < 0 || c[(n * T + t) * S + s] >= C)
          throw std::invalid_argument("candidate_cross_entropy: candidate " + std::to_string(c[(n * T + t) * S + s]) +
                                      " outside [0, " + std::to_string(C) + ")");
    }
}

}  // namespace

Var candidate_cross_entropy(const Var& features, const Var& embedding, const Var& bias, const Tensor& candidates,
                            float neg_offset) {
  if (!features || features->value.dtype() != DType::f32 || features->value.ndim() < 2)
    throw std::invalid_argument("candidate_cross_entropy: expected f32 features N,m,spatial, got " +
                                (features ? features->value.str() : std::string("nothing")));
  const Tensor& f = features->value;
  const Device dev = f.device();
  const int64_t N = f.dim(0), m = f.dim(1), S = f.numel() / (N * m), C = embedding->value.dim(0);
  check_embedding(embedding->value, bias->value, m, dev, "candidate_cross_entropy");
  check_candidates(candidates, f.shape(), C, dev);
  const int64_t T = candidates.dim(1);
  Tensor loss = Tensor::empty({1}, DType::f32, dev);
  Tensor denom = Tensor::empty({1}, DType::f32, dev);
  PW_DISPATCH(dev, candidate_ce_forward, f.f32(), embedding->value.f32(), bias->value.f32(), candidates.i32(), N, m,
              T, S, neg_offset, loss.f32(), denom.f32());
  return record(loss, {features, embedding, bias}, [candidates, denom, N, m, T, S, C, neg_offset](Node& self) {
    Node& x = *self.parents[0];
    Node& E = *self.parents[1];
    Node& b = *self.parents[2];
    Tensor df = Tensor::empty_like(x.value), dE = Tensor::empty_like(E.value), db = Tensor::empty_like(b.value);
    PW_DISPATCH(df.device(), candidate_ce_backward, x.value.f32(), E.value.f32(), b.value.f32(), candidates.i32(), N,
                m, T, S, C, neg_offset, self.grad.f32(), denom.f32(), df.f32(), dE.f32(), db.f32());
    if (x.requires_grad) accumulate_owned(x, std::move(df));
    if (E.requires_grad) accumulate_owned(E, std::move(dE));
    if (b.requires_grad) accumulate_owned(b, std::move(db));
  });
}

Tensor max_response_class(const Tensor& features, const Tensor& embedding, const Tensor& bias, float min_prob) {
  if (features.dtype() != DType::f32 || features.ndim() < 2)
    throw std::invalid_argument("max_response_class: expected f32 features m,spatial, got " + features.str());
  const Device dev = features.device();
  const int64_t m = features.dim(0), n = features.numel() / m;
  check_embedding(embedding, bias, m, dev, "max_response_class");
  Shape out(features.shape().begin() + 1, features.shape().end());
  Tensor cls = Tensor::empty(out, DType::i32, dev);
  PW_DISPATCH(dev, max_response_class, features.f32(), embedding.f32(), bias.f32(), m, embedding.dim(0), n, min_prob,
              cls.i32());
  return cls;
}

}  // namespace pw
