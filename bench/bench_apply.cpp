// Hierarchical inference throughput: a depth-2 patchwork (16^3 patches, U-Net features 8,16, three
// sigmoid labels, weights from a fixed seed: the speed does not depend on training) applied to a
// 96x96x80 phantom on the CPU, tree coverage vs lazy random sampling. Counters: patches evaluated
// per run and patches per second. Results: bench/RESULTS.md.
#include <benchmark/benchmark.h>

#include <nlohmann/json.hpp>

#include "apply/infer.h"
#include "apply/model_network.h"
#include "train/phantom.h"
#include "train/config.h"

using namespace pw;

namespace {

struct Setup {
  std::unique_ptr<train::Model> model;
  apply::InferInput input;
  Setup() {
    nlohmann::json j = {{"depth", 2},
                        {"ndim", 3},
                        {"scheme", {{"patch_size", {16, 16, 16}}, {"fov_rel", 0.8}, {"destvox_rel", 1}}},
                        {"categorical_label", {1, 2, 3}},
                        {"network", {{"features", {8, 16}}}},
                        {"intermediate_out", 2}};
    train::TrainConfig cfg = train::TrainConfig::from_json(j);
    model = std::make_unique<train::Model>(train::ModelSpec::from_config(cfg, 1), 1);
    PhantomOptions po;
    po.dims = {96, 96, 80};
    po.spacing_mm = {0.75, 0.75, 1.0};
    Phantom p = make_phantom(po);
    for (int r = 0; r < 4; ++r)
      for (int c = 0; c < 4; ++c) input.image.A(r, c) = p.affine[r * 4 + c];
    input.image.s = p.dims;
    input.data = Tensor::from_vector({1, p.dims[2], p.dims[1], p.dims[0]}, p.image);
  }
};

Setup& setup() {
  static Setup s;
  return s;
}

void run(benchmark::State& state, const apply::InferOptions& o) {
  Setup& s = setup();
  int64_t patches = 0;
  for (auto _ : state) {
    apply::ModelNetwork net(*s.model, train::Augment{});
    apply::Prediction p = apply::infer(net, s.input, o);
    patches = 0;
    for (int64_t n : p.patches_per_level) patches += n;
    benchmark::DoNotOptimize(p.prob.data());
  }
  state.counters["patches"] = static_cast<double>(patches);
  state.counters["patches_per_s"] =
      benchmark::Counter(static_cast<double>(patches) * state.iterations(), benchmark::Counter::kIsRate);
}

void BM_apply_tree(benchmark::State& state) { run(state, apply::InferOptions{}); }

void BM_apply_lazy(benchmark::State& state) {
  apply::InferOptions o;
  o.generate_type = apply::GenerateType::random;
  o.num_patches = static_cast<int>(state.range(0));
  o.branch_factor = 2;
  o.lazy_fraction = 0.5;
  run(state, o);
}

}  // namespace

BENCHMARK(BM_apply_tree)->Unit(benchmark::kMillisecond)->MeasureProcessCPUTime()->UseRealTime();
BENCHMARK(BM_apply_lazy)->Arg(64)->Arg(256)->Unit(benchmark::kMillisecond)->MeasureProcessCPUTime()->UseRealTime();
BENCHMARK_MAIN();
