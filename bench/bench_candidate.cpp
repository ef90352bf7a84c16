// Application memory and time of a many-label model: the same depth-2 patchwork (16^3 patches, U-Net
// features 8,16, weights from a fixed seed: speed and memory do not depend on training) with 64
// classes as a full softmax (65 label channels stitched) and with candidate sampling (m = 8 response
// channels stitched, classes by maximal response, apply/responses.h), applied by tree coverage to a
// 160^3 six-contrast many-label phantom (train/phantom.h) and turned into an atls label map.
// Run each in its own process so that the peak_rss_MB counter (getrusage: the process' peak resident
// memory, the phantom included) belongs to it:
//   build/bench/bench_candidate --benchmark_filter=softmax
//   build/bench/bench_candidate --benchmark_filter=candidate
#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <nlohmann/json.hpp>
#include <numeric>

#include "apply/infer.h"
#include "apply/model_network.h"
#include "apply/outputs.h"
#include "apply/responses.h"
#include "train/config.h"
#include "train/phantom.h"

using namespace pw;

namespace {

apply::InferInput phantom_input() {
  ManyLabelPhantomOptions po;
  po.dims = {160, 160, 160};
  Phantom p = make_many_label_phantom(po);
  apply::InferInput in;
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) in.image.A(r, c) = p.affine[r * 4 + c];
  in.image.s = p.dims;
  in.data = Tensor::from_vector({p.channels, p.dims[2], p.dims[1], p.dims[0]}, p.image);
  return in;
}

train::Model make_model(bool candidate) {
  std::vector<int> labels(64);
  std::iota(labels.begin(), labels.end(), 1);
  nlohmann::json j = {{"depth", 2},
                      {"ndim", 3},
                      {"scheme", {{"patch_size", {16, 16, 16}}, {"fov_rel", 0.5}, {"destvox_rel", 1}}},
                      {"categorical_label", labels},
                      {"categorical", true},
                      {"network", {{"features", {8, 16}}}},
                      {"intermediate_out", 2}};
  if (candidate) j["candidate_sampling"] = {{"dim", 8}, {"candidates", 16}};
  return train::Model(train::ModelSpec::from_config(train::TrainConfig::from_json(j), 6), 1);
}

void BM_apply(benchmark::State& state, bool candidate) {
  const apply::InferInput in = phantom_input();
  train::Model model = make_model(candidate);
  apply::LabelInfo info;
  info.categorical = true;
  info.values.resize(64);
  std::iota(info.values.begin(), info.values.end(), 1);
  const apply::OutputType atls = apply::parse_output_type("atls");
  int64_t patches = 0;
  for (auto _ : state) {
    apply::ModelNetwork net(model, train::Augment{});
    apply::Prediction p = apply::infer(net, in, apply::InferOptions{});
    if (candidate) apply::classify_prediction(p, model);
    Volume v = apply::make_output(p, atls, info);
    benchmark::DoNotOptimize(v.data.data());
    patches = std::accumulate(p.patches_per_level.begin(), p.patches_per_level.end(), int64_t{0});
  }
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  state.counters["patches"] = static_cast<double>(patches);
  state.counters["peak_rss_MB"] = static_cast<double>(ru.ru_maxrss) / 1024.0;
}

}  // namespace

BENCHMARK_CAPTURE(BM_apply, softmax, false)->Unit(benchmark::kSecond)->Iterations(1);
BENCHMARK_CAPTURE(BM_apply, candidate, true)->Unit(benchmark::kSecond)->Iterations(1);
BENCHMARK_MAIN();
