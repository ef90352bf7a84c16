// Neural-network building blocks: modules with named parameters, a conv-norm-activation block,
// and a configurable 2D/3D U-Net (the default patchwork block).
//
//   UNetConfig cfg;  cfg.dims = 3; cfg.in_channels = 2; cfg.out_channels = 3; cfg.features = {16, 32};
//   UNet net(cfg, /*seed=*/1);                 // He-initialised
//   Adam opt(net.parameters());
//   Var y = net.forward(variable(x));          // logits N,out_channels,spatial
//   save_safetensors(f, net.state_dict(), {{"model", net.config().to_json().dump()}});
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "engine/autograd.h"

namespace pw {

// A module owns parameters (trained Vars) and buffers (saved, not trained: batch-norm running
// statistics) under names, and child modules under names; full names are dotted paths
// ("enc0.conv1.weight").
class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Every parameter with its full name, in registration order (children after own).
  std::vector<std::pair<std::string, Var>> named_parameters() const;
  std::vector<Var> parameters() const;
  int64_t parameter_count() const;  // number of scalars
  // Parameters and buffers by full name (for model files).
  std::map<std::string, Tensor> state_dict() const;
  // Copies values into the parameters and buffers; every name must be present with the same
  // shape and dtype, and no unknown name is accepted: throws pw::InputError("<what>: <reason>").
  void load_state_dict(const std::map<std::string, Tensor>& state, const std::string& what = "model");

  // Training mode (batch norm uses batch statistics and updates its running ones) or
  // evaluation mode; applies to the children.
  void train(bool on = true);
  void eval() { train(false); }
  bool training() const { return training_; }
  // Moves every parameter and buffer to `device` (create optimizers afterwards).
  void to(Device device);

 protected:
  Var add_parameter(const std::string& name, Tensor value);
  Tensor& add_buffer(const std::string& name, Tensor value);
  void add_child(const std::string& name, Module& child);

 private:
  void collect(const std::string& prefix, std::vector<std::pair<std::string, Var>>* params,
               std::vector<std::pair<std::string, Tensor*>>* buffers) const;
  std::vector<std::pair<std::string, Var>> params_;
  std::vector<std::pair<std::string, std::unique_ptr<Tensor>>> buffers_;
  std::vector<std::pair<std::string, Module*>> children_;
  bool training_ = true;
};

// Deterministic initialisation: a normal generator (Box-Muller) built on std::mt19937_64, which
// is exactly specified, so a seed gives the same weights wherever libm's log/sin/cos agree.
class InitRng {
 public:
  explicit InitRng(uint64_t seed) : gen_(seed) {}
  double normal();  // N(0, 1), Box-Muller
 private:
  std::mt19937_64 gen_;
  bool has_spare_ = false;
  double spare_ = 0;
};

// He (Kaiming) normal init: std = gain / sqrt(fan_in), gain = sqrt(2 / (1 + slope^2)).
void he_normal(Tensor& w, int64_t fan_in, float slope, InitRng& rng);

enum class NormKind { none, instance, batch };
enum class ActKind { relu, leaky };
enum class DownKind { maxpool, strided_conv };         // strided_conv: kernel 2, stride 2
enum class UpKind { transposed_conv, nearest, linear };  // transposed: kernel 2, stride 2

// Convolution with He-initialised weight (Cout,Cin,k...) and zero bias (optional).
class Conv : public Module {
 public:
  Conv(int dims, int64_t cin, int64_t cout, int kernel, int stride, int padding, bool bias, float slope,
       InitRng& rng);
  Var forward(const Var& x) const;

 private:
  Var w_, b_;
  int stride_, padding_;
};

// Transposed convolution, kernel 2, stride 2 (weight Cin,Cout,2...).
class ConvTranspose : public Module {
 public:
  ConvTranspose(int dims, int64_t cin, int64_t cout, InitRng& rng);
  Var forward(const Var& x) const;

 private:
  Var w_, b_;
};

// Instance or batch norm with affine weight (1) and bias (0); batch norm keeps running_mean and
// running_var buffers (momentum 0.1).
class Norm : public Module {
 public:
  Norm(NormKind kind, int64_t channels);
  // act(norm(x)), fused (instance_norm_act, batch_norm_act: the normalised tensor is not kept); with no
  // norm, act(x).
  Var forward_act(const Var& x, ActKind act, float slope);

 private:
  NormKind kind_;
  Var weight_, bias_;
  Tensor* running_mean_ = nullptr;
  Tensor* running_var_ = nullptr;
};

// conv(k3, padding 1, or 0 for a valid convolution) -> norm -> activation. The conv has a bias only without norm.
class ConvNormAct : public Module {
 public:
  ConvNormAct(int dims, int64_t cin, int64_t cout, NormKind norm, ActKind act, float slope, InitRng& rng,
              int padding = 1);
  Var forward(const Var& x);

 private:
  std::unique_ptr<Conv> conv_;
  std::unique_ptr<Norm> norm_;
  ActKind act_;
  float slope_;
};

struct UNetConfig {
  int dims = 3;                    // 2 or 3
  int64_t in_channels = 1;
  int64_t out_channels = 2;
  std::vector<int64_t> features{16, 32, 64};  // channels per level; levels = features.size()
  int convs_per_block = 2;
  NormKind norm = NormKind::instance;
  ActKind activation = ActKind::leaky;
  float leaky_slope = 0.01f;
  DownKind down = DownKind::maxpool;
  UpKind up = UpKind::transposed_conv;
  bool valid = false;  // "padding": "valid": unpadded 3x3 convs, the output is smaller than the input

  // The output size along an axis of `in` voxels: `in` itself (padded convs; -1 unless a multiple of
  // 2^(levels-1)); with valid convs each conv takes 2 voxels, each down step needs an even size, the
  // up step doubles and the skip is cut to its centre (-1 when a size gets odd or below 1).
  int64_t output_size(int64_t in) const;

  // {"type": "unet", "dims": 3, "in_channels": 1, "out_channels": 2, "features": [16, 32, 64],
  //  "convs_per_block": 2, "norm": "none|instance|batch", "activation": "relu|leaky",
  //  "leaky_slope": 0.01, "down": "maxpool|strided_conv", "up": "transposed_conv|nearest|linear",
  //  "padding": "same|valid"}
  nlohmann::json to_json() const;
  // Missing keys keep their defaults; unknown keys or bad values throw pw::InputError.
  static UNetConfig from_json(const nlohmann::json& j);
  void validate() const;  // throws pw::InputError naming the bad field
};

// U-Net: encoder level l = block(features[l]) (after a down step for l > 0); decoder level l =
// up(features[l+1] -> features[l] for transposed_conv; channels kept for nearest/linear),
// concat with the skip, block(features[l]); a 1x1 conv to out_channels gives the logits.
// Spatial sizes must be multiples of 2^(levels-1); with valid convs, sizes with output_size >= 1 (the
// skips are cut to their central part, as in the original U-Net). Each parameter Var carries its full name
// ("dec0.1.conv.weight"), so errors about it name it.
class UNet : public Module {
 public:
  UNet(const UNetConfig& config, uint64_t seed = 1);
  Var forward(const Var& x);
  const UNetConfig& config() const { return config_; }
  // The multiple the spatial sizes must have.
  int64_t size_multiple() const { return int64_t{1} << (config_.features.size() - 1); }

 private:
  UNetConfig config_;
  std::vector<std::unique_ptr<Module>> owned_;  // every submodule, owned here
  std::vector<std::vector<ConvNormAct*>> enc_, dec_;
  std::vector<Conv*> down_;
  std::vector<Module*> up_;
  Conv* head_ = nullptr;
};

}  // namespace pw
