// The engine op list: every op of engine/ops.h and engine/ops_patch.h, once, and the registry of the
// tests that cover them.
//
//   X(op, no_gradient)   no_gradient: "" for a differentiable op, else why it has no gradient.
//
// A test names the op it covers with a macro that both registers the case and opens its TEST_CASE:
//   PW_PARITY_CASE(op, "what")    tests/engine/test_cuda_parity.cpp: CPU vs CUDA, forward and backward
//                                 (skipped without a GPU, but registered all the same)
//   PW_GRADIENT_CASE(op, "what")  tests/engine/test_gradcheck.cpp: the finite-difference check
// Both refuse to compile for a name that is not in the list. test_op_list.cpp (CPU, never skipped)
// fails, printing the names, when an op of the list has no parity case, when a differentiable op has
// no gradient case (or an op marked "no gradient" has one), and when engine/ops.h or
// engine/ops_patch.h declares an op that is not in the list.
#pragma once
#include <doctest/doctest.h>

#include <map>
#include <string>
#include <vector>

#include "engine/tensor.h"  // cuda_available()

#define PW_ENGINE_OPS(X)                                                                                        \
  /* engine/ops.h */                                                                                            \
  X(conv, "")                                                                                                   \
  X(conv_transpose, "")                                                                                         \
  X(max_pool, "")                                                                                               \
  X(avg_pool, "")                                                                                               \
  X(upsample, "")                                                                                               \
  X(instance_norm, "")                                                                                          \
  X(instance_norm_act, "")                                                                                      \
  X(batch_norm, "")                                                                                             \
  X(batch_norm_act, "")                                                                                         \
  X(relu, "")                                                                                                   \
  X(leaky_relu, "")                                                                                             \
  X(sigmoid, "")                                                                                                \
  X(softmax, "")                                                                                                \
  X(add, "")                                                                                                    \
  X(mul, "")                                                                                                    \
  X(scale, "")                                                                                                  \
  X(concat, "")                                                                                                 \
  X(slice, "")                                                                                                  \
  X(sum, "")                                                                                                    \
  X(mean, "")                                                                                                   \
  X(bce_with_logits, "") /* with respect to the logits; targets and masks are data */                           \
  X(cross_entropy, "")                                                                                          \
  X(soft_dice, "")                                                                                              \
  X(candidate_cross_entropy, "") /* with respect to features, embedding and bias */                           \
  X(max_response_class, "a class index per voxel (argmax), outside the graph")                                \
  /* engine/ops_patch.h */                                                                                      \
  X(gather_patches, "") /* with respect to the source */                                                        \
  X(gather_patches_nested, "") /* with respect to the parents */                                                \
  X(crop_centre, "") /* a nested gather at an integer shift */                                                  \
  X(gather_labels, "integer labels in, integer patches out")                                                    \
  X(gather_patches_into, "writes into a caller's tensor outside the graph (gather_patches is the graph form)")  \
  X(gather_labels_into, "integer labels in, integer patches out, into a caller's tensor")                       \
  X(stitch_accumulate, "inference: adds into the caller's acc and weight tensors, outside the graph")           \
  X(stitch_normalize, "inference: Tensor in, Tensor out, outside the graph")                                    \
  X(presmooth, "preprocessing of a source before a crop: Tensor in, Tensor out, outside the graph")

namespace pw::test::oplist {

#define PW_OPLIST_ENUM_(op, no_gradient) op,
enum class Op { PW_ENGINE_OPS(PW_OPLIST_ENUM_) };
#undef PW_OPLIST_ENUM_

struct OpInfo {
  Op op;
  const char* name;
  const char* no_gradient;  // "" when differentiable
  bool differentiable() const { return no_gradient[0] == '\0'; }
};

inline const std::vector<OpInfo>& ops() {
#define PW_OPLIST_INFO_(op, no_gradient) OpInfo{Op::op, #op, no_gradient},
  static const std::vector<OpInfo> list = {PW_ENGINE_OPS(PW_OPLIST_INFO_)};
#undef PW_OPLIST_INFO_
  return list;
}

enum class Check { parity, gradient };

// The registered cases: check -> op -> case descriptions. Filled by the macros below during static
// initialisation (before main), so a skipped TEST_CASE is registered too.
inline std::map<Op, std::vector<std::string>>& covered(Check check) {
  static std::map<Op, std::vector<std::string>> parity, gradient;
  return check == Check::parity ? parity : gradient;
}
inline bool record(Check check, Op op, const char* what) {
  covered(check)[op].push_back(what);
  return true;
}

}  // namespace pw::test::oplist

// TEST_CASE "cuda parity: <op>: <what>", skipped (reported as skipped) without a GPU.
#define PW_PARITY_CASE(op, what)                                                                       \
  static const bool DOCTEST_ANONYMOUS(pw_parity_case_) =                                               \
      ::pw::test::oplist::record(::pw::test::oplist::Check::parity, ::pw::test::oplist::Op::op, what); \
  TEST_CASE("cuda parity: " #op ": " what * doctest::skip(!::pw::cuda_available()))

// TEST_CASE "gradient: <op>: <what>" (CPU).
#define PW_GRADIENT_CASE(op, what)                                                                       \
  static const bool DOCTEST_ANONYMOUS(pw_gradient_case_) =                                               \
      ::pw::test::oplist::record(::pw::test::oplist::Check::gradient, ::pw::test::oplist::Op::op, what); \
  TEST_CASE("gradient: " #op ": " what)
