// Structure-aware mutation for the config and model fuzz targets' custom mutators: libFuzzer's byte
// mutations rarely keep JSON valid (and never keep a safetensors header length right), so a share of
// the mutations parse the JSON, change one value (an interesting number, a wrong type, a removed or an
// added key, a copied array element) and write it back.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

extern "C" size_t LLVMFuzzerMutate(uint8_t* data, size_t size, size_t max_size);

namespace pw_fuzz {

using nlohmann::json;

inline void collect_nodes(json& j, std::vector<json*>& out) {
  out.push_back(&j);
  if (j.is_structured())
    for (auto& e : j) collect_nodes(e, out);
}

// One random change to `root`; `keys` are names worth adding to objects (the parser's own keys).
inline void mutate_json(json& root, std::minstd_rand& rng, const std::vector<std::string>& keys) {
  static const json interesting[] = {0, 1, -1, 2, 3, 4, 7, 8, 16, 255, 256, 4096, 4097, 65535, 65536, 1000000,
                                     2147483647, 2147483648LL, -2147483648LL, -2147483649LL, 4294967296LL,
                                     9223372036854775807LL, 18446744073709551615ULL, 0.5, -0.5, 1.5, 1e9, 1e19,
                                     1e300, -1e300, 1e-300, "", "x", "mult", "simple", "NN", "lin", "unet", "batch",
                                     "none", "mixture", "tree", true, false, nullptr, json::array(), json::object(),
                                     json::array({1}), json::array({1, 2}), json::array({1, 2, 3}),
                                     json::array({json::array({8, 8}), json::array({4, 4})})};
  const size_t n_interesting = sizeof interesting / sizeof interesting[0];
  std::vector<json*> nodes;
  collect_nodes(root, nodes);
  json& n = *nodes[rng() % nodes.size()];
  switch (rng() % 6) {
    case 0:
    case 1:
      n = interesting[rng() % n_interesting];
      break;
    case 2:  // remove a key or an element
      if (n.is_object() && !n.empty()) {
        auto it = n.begin();
        std::advance(it, rng() % n.size());
        n.erase(it);
      } else if (n.is_array() && !n.empty()) {
        n.erase(n.begin() + static_cast<std::ptrdiff_t>(rng() % n.size()));
      }
      break;
    case 3:  // add a known key, or copy an element
      if (n.is_object() && !keys.empty()) n[keys[rng() % keys.size()]] = interesting[rng() % n_interesting];
      else if (n.is_array() && !n.empty()) n.push_back(json(n[rng() % n.size()]));
      break;
    case 4:  // a nearby number
      if (n.is_number_integer())  // wrapping (unsigned) arithmetic: INT64_MAX + 1 is no error of the target
        n = static_cast<int64_t>(n.get<uint64_t>() + rng() % 5 - 2);
      else if (n.is_number()) n = n.get<double>() * (rng() % 2 ? 1e3 : -1.0);
      else n = interesting[rng() % n_interesting];
      break;
    default:  // copy one node over another
      n = json(*nodes[rng() % nodes.size()]);
      break;
  }
}

// Byte mutation of `s` by libFuzzer (room to grow to `max_size`).
inline std::string mutate_bytes(const std::string& s, size_t max_size) {
  std::vector<uint8_t> buf(s.begin(), s.end());
  buf.resize(std::max(max_size, s.size() + 1));
  buf.resize(LLVMFuzzerMutate(buf.data(), s.size(), buf.size()));
  return std::string(buf.begin(), buf.end());
}

inline std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

}  // namespace pw_fuzz
