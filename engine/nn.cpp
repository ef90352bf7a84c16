#include "engine/nn.h"

#include <cmath>
#include <stdexcept>

#include "engine/ops.h"
#include "engine/ops_patch.h"
#include "io/error.h"

namespace pw {

// ---- Module -----------------------------------------------------------------------------------

Var Module::add_parameter(const std::string& name, Tensor value) {
  Var v = variable(std::move(value), true, name);
  params_.emplace_back(name, v);
  return v;
}

Tensor& Module::add_buffer(const std::string& name, Tensor value) {
  buffers_.emplace_back(name, std::make_unique<Tensor>(std::move(value)));
  return *buffers_.back().second;
}

void Module::add_child(const std::string& name, Module& child) { children_.emplace_back(name, &child); }

void Module::collect(const std::string& prefix, std::vector<std::pair<std::string, Var>>* params,
                     std::vector<std::pair<std::string, Tensor*>>* buffers) const {
  if (params)
    for (const auto& [name, v] : params_) params->emplace_back(prefix + name, v);
  if (buffers)
    for (const auto& [name, t] : buffers_) buffers->emplace_back(prefix + name, t.get());
  for (const auto& [name, child] : children_) child->collect(prefix + name + ".", params, buffers);
}

std::vector<std::pair<std::string, Var>> Module::named_parameters() const {
  std::vector<std::pair<std::string, Var>> out;
  collect("", &out, nullptr);
  return out;
}

std::vector<Var> Module::parameters() const {
  std::vector<Var> out;
  for (auto& [name, v] : named_parameters()) out.push_back(v);
  return out;
}

int64_t Module::parameter_count() const {
  int64_t n = 0;
  for (auto& [name, v] : named_parameters()) n += v->value.numel();
  return n;
}

std::map<std::string, Tensor> Module::state_dict() const {
  std::vector<std::pair<std::string, Var>> params;
  std::vector<std::pair<std::string, Tensor*>> buffers;
  collect("", &params, &buffers);
  std::map<std::string, Tensor> out;
  for (auto& [name, v] : params) out[name] = v->value;
  for (auto& [name, t] : buffers) out[name] = *t;
  return out;
}

void Module::load_state_dict(const std::map<std::string, Tensor>& state, const std::string& what) {
  std::vector<std::pair<std::string, Var>> params;
  std::vector<std::pair<std::string, Tensor*>> buffers;
  collect("", &params, &buffers);
  std::map<std::string, Tensor*> targets;
  for (auto& [name, v] : params) targets[name] = &v->value;
  for (auto& [name, t] : buffers) targets[name] = t;
  for (const auto& [name, t] : state)
    if (!targets.count(name)) throw InputError(what + ": unexpected tensor '" + name + "'");
  // Check everything before changing anything.
  for (const auto& [name, dst] : targets) {
    auto it = state.find(name);
    if (it == state.end()) throw InputError(what + ": missing tensor '" + name + "'");
    if (it->second.dtype() != dst->dtype() || it->second.shape() != dst->shape())
      throw InputError(what + ": tensor '" + name + "' is " + it->second.str() + ", expected " +
                       dtype_name(dst->dtype()) + shape_str(dst->shape()));
  }
  for (auto& [name, dst] : targets) *dst = state.at(name).to(dst->device()).clone();
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [name, child] : children_) child->train(on);
}

void Module::to(Device device) {
  for (auto& [name, v] : params_) {
    v->value = v->value.to(device);
    v->grad = Tensor();
  }
  for (auto& [name, t] : buffers_) *t = t->to(device);
  for (auto& [name, child] : children_) child->to(device);
}

// ---- initialisation ---------------------------------------------------------------------------

double InitRng::normal() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  const double two_pi = 6.283185307179586476925286766559;
  // Uniforms in (0, 1] and [0, 1) from the top 53 bits.
  const double u1 = (static_cast<double>(gen_() >> 11) + 1.0) * 0x1.0p-53;
  const double u2 = static_cast<double>(gen_() >> 11) * 0x1.0p-53;
  const double r = std::sqrt(-2.0 * std::log(u1));
  spare_ = r * std::sin(two_pi * u2);
  has_spare_ = true;
  return r * std::cos(two_pi * u2);
}

void he_normal(Tensor& w, int64_t fan_in, float slope, InitRng& rng) {
  const double stddev = std::sqrt(2.0 / (1.0 + static_cast<double>(slope) * slope)) / std::sqrt(double(fan_in));
  float* p = w.f32();
  for (int64_t i = 0; i < w.numel(); ++i) p[i] = static_cast<float>(stddev * rng.normal());
}

// ---- layers -----------------------------------------------------------------------------------

namespace {
Shape kernel_shape(int64_t a, int64_t b, int dims, int k) {
  Shape s{a, b};
  for (int i = 0; i < dims; ++i) s.push_back(k);
  return s;
}
int64_t ipow(int64_t b, int e) {
  int64_t r = 1;
  for (int i = 0; i < e; ++i) r *= b;
  return r;
}
}  // namespace

Conv::Conv(int dims, int64_t cin, int64_t cout, int kernel, int stride, int padding, bool bias, float slope,
           InitRng& rng)
    : stride_(stride), padding_(padding) {
  Tensor w = Tensor::empty(kernel_shape(cout, cin, dims, kernel));
  he_normal(w, cin * ipow(kernel, dims), slope, rng);
  w_ = add_parameter("weight", w);
  if (bias) b_ = add_parameter("bias", Tensor::zeros({cout}));
}

Var Conv::forward(const Var& x) const { return conv(x, w_, b_, stride_, padding_); }

ConvTranspose::ConvTranspose(int dims, int64_t cin, int64_t cout, InitRng& rng) {
  Tensor w = Tensor::empty(kernel_shape(cin, cout, dims, 2));
  he_normal(w, cin, 0.f, rng);  // kernel = stride: each output sees cin inputs
  w_ = add_parameter("weight", w);
  b_ = add_parameter("bias", Tensor::zeros({cout}));
}

Var ConvTranspose::forward(const Var& x) const { return conv_transpose(x, w_, b_, 2); }

Norm::Norm(NormKind kind, int64_t channels) : kind_(kind) {
  if (kind == NormKind::none) return;
  weight_ = add_parameter("weight", Tensor::full({channels}, 1.f));
  bias_ = add_parameter("bias", Tensor::zeros({channels}));
  if (kind == NormKind::batch) {
    running_mean_ = &add_buffer("running_mean", Tensor::zeros({channels}));
    running_var_ = &add_buffer("running_var", Tensor::full({channels}, 1.f));
  }
}

Var Norm::forward_act(const Var& x, ActKind act, float slope) {
  const float s = act == ActKind::relu ? 0.f : slope;
  switch (kind_) {
    case NormKind::instance: return instance_norm_act(x, weight_, bias_, s);
    case NormKind::batch: return batch_norm_act(x, weight_, bias_, *running_mean_, *running_var_, training(), s);
    case NormKind::none: break;
  }
  return act == ActKind::relu ? relu(x) : leaky_relu(x, slope);
}

ConvNormAct::ConvNormAct(int dims, int64_t cin, int64_t cout, NormKind norm, ActKind act, float slope, InitRng& rng,
                         int padding)
    : act_(act), slope_(slope) {
  conv_ = std::make_unique<Conv>(dims, cin, cout, 3, 1, padding, norm == NormKind::none,
                                 act == ActKind::leaky ? slope : 0.f, rng);
  add_child("conv", *conv_);
  norm_ = std::make_unique<Norm>(norm, cout);
  if (norm != NormKind::none) add_child("norm", *norm_);
}

Var ConvNormAct::forward(const Var& x) { return norm_->forward_act(conv_->forward(x), act_, slope_); }

// ---- U-Net configuration ----------------------------------------------------------------------

namespace {

template <class E>
struct Names {
  std::vector<std::pair<E, const char*>> list;
  const char* name(E e) const {
    for (auto& [v, n] : list)
      if (v == e) return n;
    return "?";
  }
  E parse(const std::string& s, const char* key) const {
    std::string all;
    for (auto& [v, n] : list) {
      if (s == n) return v;
      all += (all.empty() ? "" : ", ") + std::string(n);
    }
    throw InputError(std::string("unet ") + key + ": '" + s + "' is not one of " + all);
  }
};
const Names<NormKind> kNorms{{{NormKind::none, "none"}, {NormKind::instance, "instance"}, {NormKind::batch, "batch"}}};
const Names<ActKind> kActs{{{ActKind::relu, "relu"}, {ActKind::leaky, "leaky"}}};
const Names<DownKind> kDowns{{{DownKind::maxpool, "maxpool"}, {DownKind::strided_conv, "strided_conv"}}};
const Names<UpKind> kUps{
    {{UpKind::transposed_conv, "transposed_conv"}, {UpKind::nearest, "nearest"}, {UpKind::linear, "linear"}}};

}  // namespace

nlohmann::json UNetConfig::to_json() const {
  return nlohmann::json{{"type", "unet"},
                        {"dims", dims},
                        {"in_channels", in_channels},
                        {"out_channels", out_channels},
                        {"features", features},
                        {"convs_per_block", convs_per_block},
                        {"norm", kNorms.name(norm)},
                        {"activation", kActs.name(activation)},
                        {"leaky_slope", leaky_slope},
                        {"down", kDowns.name(down)},
                        {"up", kUps.name(up)},
                        {"padding", valid ? "valid" : "same"}};
}

UNetConfig UNetConfig::from_json(const nlohmann::json& j) {
  if (!j.is_object()) throw InputError("unet: the description must be a JSON object");
  UNetConfig c;
  auto get_int = [&](const char* key, auto* dst) {
    if (!j.contains(key)) return;
    if (!j[key].is_number_integer()) throw InputError(std::string("unet ") + key + ": expected an integer");
    *dst = j[key].get<std::remove_pointer_t<decltype(dst)>>();
  };
  auto get_str = [&](const char* key) -> std::string {
    if (!j[key].is_string()) throw InputError(std::string("unet ") + key + ": expected a string");
    return j[key].get<std::string>();
  };
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    if (k == "type") {
      if (get_str("type") != "unet") throw InputError("unet type: expected \"unet\", got " + it.value().dump());
    } else if (k == "dims") {
      get_int("dims", &c.dims);
    } else if (k == "in_channels") {
      get_int("in_channels", &c.in_channels);
    } else if (k == "out_channels") {
      get_int("out_channels", &c.out_channels);
    } else if (k == "convs_per_block") {
      get_int("convs_per_block", &c.convs_per_block);
    } else if (k == "features") {
      if (!it.value().is_array()) throw InputError("unet features: expected an array of integers");
      c.features.clear();
      for (auto& f : it.value()) {
        if (!f.is_number_integer()) throw InputError("unet features: expected an array of integers");
        c.features.push_back(f.get<int64_t>());
      }
    } else if (k == "norm") {
      c.norm = kNorms.parse(get_str("norm"), "norm");
    } else if (k == "activation") {
      c.activation = kActs.parse(get_str("activation"), "activation");
    } else if (k == "leaky_slope") {
      if (!it.value().is_number()) throw InputError("unet leaky_slope: expected a number");
      c.leaky_slope = it.value().get<float>();
    } else if (k == "down") {
      c.down = kDowns.parse(get_str("down"), "down");
    } else if (k == "up") {
      c.up = kUps.parse(get_str("up"), "up");
    } else if (k == "padding") {
      const std::string p = get_str("padding");
      if (p != "same" && p != "valid") throw InputError("unet padding: '" + p + "' is not one of same, valid");
      c.valid = p == "valid";
    } else {
      throw InputError("unet: unknown key '" + k + "'");
    }
  }
  c.validate();
  return c;
}

void UNetConfig::validate() const {
  if (dims != 2 && dims != 3) throw InputError("unet dims: expected 2 or 3, got " + std::to_string(dims));
  if (in_channels < 1 || out_channels < 1) throw InputError("unet in_channels/out_channels: must be >= 1");
  if (features.empty() || features.size() > 8) throw InputError("unet features: expected 1 to 8 levels");
  for (int64_t f : features)
    if (f < 1) throw InputError("unet features: every level needs >= 1 channel");
  if (convs_per_block < 1) throw InputError("unet convs_per_block: must be >= 1");
  if (!(leaky_slope >= 0.f && leaky_slope < 1.f)) throw InputError("unet leaky_slope: must be in [0, 1)");
}

int64_t UNetConfig::output_size(int64_t in) const {
  const int L = static_cast<int>(features.size());
  if (!valid) return in % (int64_t{1} << (L - 1)) == 0 ? in : -1;
  const int64_t conv = 2 * int64_t{convs_per_block};  // voxels a block's convs take
  int64_t s = in;
  for (int l = 0; l < L; ++l) {
    if (l > 0) {
      if (s % 2 != 0) return -1;
      s /= 2;
    }
    s -= conv;
    if (s < 1) return -1;
  }
  for (int l = L - 2; l >= 0; --l) {
    s = 2 * s - conv;
    if (s < 1) return -1;
  }
  return s;
}

// ---- U-Net ------------------------------------------------------------------------------------

UNet::UNet(const UNetConfig& config, uint64_t seed) : config_(config) {
  config_.validate();
  InitRng rng(seed);
  const UNetConfig& c = config_;
  const int L = static_cast<int>(c.features.size());
  const float slope = c.activation == ActKind::leaky ? c.leaky_slope : 0.f;
  auto own = [&](auto ptr, const std::string& name) {
    auto* raw = ptr.get();
    add_child(name, *raw);
    owned_.push_back(std::move(ptr));
    return raw;
  };
  auto block = [&](int64_t cin, int64_t cout, const std::string& name) {
    std::vector<ConvNormAct*> b;
    for (int i = 0; i < c.convs_per_block; ++i)
      b.push_back(own(std::make_unique<ConvNormAct>(c.dims, i == 0 ? cin : cout, cout, c.norm, c.activation,
                                                    c.leaky_slope, rng, c.valid ? 0 : 1),
                      name + "." + std::to_string(i)));
    return b;
  };
  for (int l = 0; l < L; ++l) {
    if (l > 0 && c.down == DownKind::strided_conv)
      down_.push_back(own(std::make_unique<Conv>(c.dims, c.features[l - 1], c.features[l - 1], 2, 2, 0, true, slope, rng),
                          "down" + std::to_string(l)));
    enc_.push_back(block(l == 0 ? c.in_channels : c.features[l - 1], c.features[l], "enc" + std::to_string(l)));
  }
  dec_.resize(L - 1);
  up_.resize(L - 1);
  for (int l = L - 2; l >= 0; --l) {
    int64_t up_channels = c.features[l + 1];
    if (c.up == UpKind::transposed_conv) {
      up_[l] = own(std::make_unique<ConvTranspose>(c.dims, c.features[l + 1], c.features[l], rng),
                   "up" + std::to_string(l));
      up_channels = c.features[l];
    }
    dec_[l] = block(up_channels + c.features[l], c.features[l], "dec" + std::to_string(l));
  }
  head_ = own(std::make_unique<Conv>(c.dims, c.features[0], c.out_channels, 1, 1, 0, true, 1.f, rng), "head");
  for (auto& [name, v] : named_parameters()) v->name = name;
}

Var UNet::forward(const Var& x) {
  const UNetConfig& c = config_;
  const int L = static_cast<int>(c.features.size());
  const Tensor& t = x->value;
  if (t.ndim() != c.dims + 2 || t.dim(1) != c.in_channels)
    throw std::invalid_argument("unet: expected input N," + std::to_string(c.in_channels) + ",spatial (" +
                                std::to_string(c.dims) + "D), got " + shape_str(t.shape()));
  for (int i = 2; i < t.ndim(); ++i)
    if (c.output_size(t.dim(i)) < 1)
      throw std::invalid_argument(c.valid ? "unet: valid convolutions cannot take the spatial sizes " +
                                                shape_str(t.shape())
                                          : "unet: spatial sizes must be multiples of " +
                                                std::to_string(size_multiple()) + ", got " + shape_str(t.shape()));
  std::vector<Var> skips;
  Var h = x;
  for (int l = 0; l < L; ++l) {
    if (l > 0) h = c.down == DownKind::maxpool ? max_pool(h, 2, 2) : down_[l - 1]->forward(h);
    for (ConvNormAct* b : enc_[l]) h = b->forward(h);
    skips.push_back(h);
  }
  for (int l = L - 2; l >= 0; --l) {
    switch (c.up) {
      case UpKind::transposed_conv: h = static_cast<ConvTranspose*>(up_[l])->forward(h); break;
      case UpKind::nearest: h = upsample(h, 2, UpsampleMode::nearest); break;
      case UpKind::linear: h = upsample(h, 2, UpsampleMode::linear); break;
    }
    const Shape& hs = h->value.shape();
    h = concat({h, c.valid ? crop_centre(skips[l], Shape(hs.begin() + 2, hs.end())) : skips[l]});
    for (ConvNormAct* b : dec_[l]) h = b->forward(h);
  }
  return head_->forward(h);
}

}  // namespace pw
