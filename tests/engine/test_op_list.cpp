// The op lists are complete and covered (CPU only, never skipped):
//   * every op of the engine op list (op_list.h) has a CUDA parity case (test_cuda_parity.cpp; those
//     are registered even where they are skipped for want of a GPU) and, unless the list marks it
//     "no gradient" with a reason, a finite-difference gradient case (test_gradcheck.cpp);
//   * every op that engine/ops.h and engine/ops_patch.h declare is in the list;
//   * every kernel of the kernel op list (kernels/op_list.h) has a body on each backend built (the
//     test takes each CPU body's address with its listed signature, so a missing body fails the link;
//     the CUDA bodies are the entries of the CUDA plugin's table, which it loads: its link would fail
//     on a missing body, --no-undefined, and every entry must be set).
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/candidate.h"
#include "engine/cuda_backend.h"
#include "kernels/conv.h"
#include "kernels/elementwise.h"
#include "kernels/gather.h"
#include "kernels/loss.h"
#include "kernels/norm.h"
#include "kernels/op_list.h"
#include "kernels/optim.h"
#include "kernels/pool.h"
#include "kernels/scatter.h"
#include "kernels/smooth.h"
#include "op_list.h"

using namespace pw::test::oplist;
namespace fs = std::filesystem;

namespace {

std::string joined(const std::vector<std::string>& lines) {
  std::string s;
  for (const std::string& l : lines) s += "\n  " + l;
  return s;
}

// The names of the ops a header of the engine declares: namespace-scope functions returning Var,
// Tensor or void ("Var relu(const Var& x);").
std::set<std::string> declared_ops(const fs::path& header) {
  std::ifstream in(header);
  REQUIRE_MESSAGE(in.good(), "cannot read " << header);
  std::stringstream text;
  text << in.rdbuf();
  const std::string s = text.str();
  std::set<std::string> names;
  static const std::regex decl(R"(\n(?:Var|Tensor|void) ([a-z_0-9]+)\()");
  for (auto it = std::sregex_iterator(s.begin(), s.end(), decl); it != std::sregex_iterator(); ++it)
    names.insert((*it)[1]);
  return names;
}

// The repository root: this file is tests/engine/test_op_list.cpp in it.
fs::path source_root() { return fs::path(__FILE__).parent_path().parent_path().parent_path(); }

}  // namespace

TEST_CASE("op list: every engine op has a CUDA parity case and a gradient case") {
  std::vector<std::string> missing;
  for (const OpInfo& o : ops()) {
    const std::string name = o.name;
    if (!covered(Check::parity).count(o.op))
      missing.push_back(name + ": no CUDA parity case (PW_PARITY_CASE in tests/engine/test_cuda_parity.cpp)");
    const bool has_gradient_case = covered(Check::gradient).count(o.op) > 0;
    if (o.differentiable() && !has_gradient_case)
      missing.push_back(name + ": no gradient case (PW_GRADIENT_CASE in tests/engine/test_gradcheck.cpp)");
    if (!o.differentiable() && has_gradient_case)
      missing.push_back(name + ": has a gradient case but the op list says \"no gradient: " + o.no_gradient + "\"");
  }
  CHECK_MESSAGE(missing.empty(), missing.size() << " op(s) not covered:" << joined(missing));
  MESSAGE(ops().size() << " engine ops; parity cases for " << covered(Check::parity).size() << ", gradient cases for "
                       << covered(Check::gradient).size());
}

TEST_CASE("op list: engine/ops.h and engine/ops_patch.h declare no op outside the list, and the list none besides") {
  const fs::path root = source_root();
  REQUIRE_MESSAGE(fs::exists(root / "engine" / "ops.h"), "no engine/ops.h under " << root << " (from __FILE__)");
  std::set<std::string> declared = declared_ops(root / "engine" / "ops.h");
  for (const std::string& n : declared_ops(root / "engine" / "ops_patch.h")) declared.insert(n);
  std::set<std::string> listed;
  for (const OpInfo& o : ops()) {
    CHECK_MESSAGE(listed.insert(o.name).second, o.name << " is in the op list twice");
  }
  std::vector<std::string> problems;
  for (const std::string& n : declared)
    if (!listed.count(n)) problems.push_back(n + ": declared in engine/ but not in the op list (tests/engine/op_list.h)");
  for (const std::string& n : listed)
    if (!declared.count(n)) problems.push_back(n + ": in the op list but not declared in engine/ops.h or engine/ops_patch.h");
  CHECK_MESSAGE(problems.empty(), joined(problems));
}

// Every kernel of kernels/op_list.h on the backends built, by name, its address taken with the listed
// signature (the parameter types are spelled as in the family headers, inside pw::kernels).
namespace pw::kernels {
namespace {
struct KernelBody {
  std::string name;
  void (*body)();
};
std::vector<KernelBody> kernel_bodies() {
  std::vector<KernelBody> all;
#define PW_TAKE_KERNEL_(ns, ret, name, params) \
  all.push_back({#ns "::" #name, reinterpret_cast<void (*)()>(static_cast<ret(*) params>(&ns::name))});
#define PW_TAKE_CPU_(ret, name, params) PW_TAKE_KERNEL_(cpu, ret, name, params)
  PW_KERNELS_ALL(PW_TAKE_CPU_)
#undef PW_TAKE_CPU_
#ifdef PW_HAVE_CUDA
  const CudaKernels& table = cuda_backend().kernels;  // the plugin, loaded (no GPU needed)
#define PW_TAKE_CUDA_(ret, name, params)        \
  all.push_back({"cuda::" #name, reinterpret_cast<void (*)()>( \
                                     static_cast<const CudaEntry<cuda_op::name, ret(*) params>&>(table).fn)});
  PW_KERNELS_ALL(PW_TAKE_CUDA_)
#undef PW_TAKE_CUDA_
#endif
#undef PW_TAKE_KERNEL_
  return all;
}
}  // namespace
}  // namespace pw::kernels

TEST_CASE("kernel op list: every kernel has a body on each backend built") {
  const std::vector<pw::kernels::KernelBody> all = pw::kernels::kernel_bodies();
#ifdef PW_HAVE_CUDA
  const size_t backends = 2;
#else
  const size_t backends = 1;
#endif
  REQUIRE(!all.empty());
  CHECK(all.size() % backends == 0);
  for (const auto& k : all) CHECK_MESSAGE(static_cast<bool>(k.body), k.name);
  const size_t per_backend = all.size() / backends;
  MESSAGE(per_backend << " kernels per backend in kernels/op_list.h, " << backends << " backend(s) built");
}
