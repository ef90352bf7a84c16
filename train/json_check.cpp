#include "train/json_check.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "io/error.h"

namespace pw::train {

using nlohmann::json;

static size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string closest_key(const std::string& key, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_d = 3;  // suggest only within 2 edits
  for (const auto& c : candidates) {
    size_t d = edit_distance(key, c);
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  return best;
}

void check_keys(const json& j, const std::vector<std::string>& allowed, const std::string& where) {
  if (!j.is_object()) throw InputError(where + ": expected a JSON object, got " + j.dump());
  for (const auto& item : j.items()) {
    if (std::find(allowed.begin(), allowed.end(), item.key()) != allowed.end()) continue;
    std::string msg = where + ": unknown key '" + item.key() + "'";
    std::string near = closest_key(item.key(), allowed);
    if (!near.empty()) msg += " (did you mean '" + near + "'?)";
    throw InputError(msg);
  }
}

static std::string short_dump(const json& v) {
  std::string s = v.dump();
  return s.size() > 60 ? s.substr(0, 57) + "..." : s;
}

double json_number(const json& v, const std::string& key) {
  if (!v.is_number()) throw InputError(key + ": expected a number, got " + short_dump(v));
  double d = v.get<double>();
  if (!std::isfinite(d)) throw InputError(key + ": expected a finite number, got " + short_dump(v));
  return d;
}

int json_int(const json& v, const std::string& key) {
  if (!v.is_number_integer() && !(v.is_number_float() && std::floor(v.get<double>()) == v.get<double>()))
    throw InputError(key + ": expected an integer, got " + short_dump(v));
  const double d = v.get<double>();  // converting a double outside int's range is undefined behaviour
  if (!(d >= std::numeric_limits<int>::min() && d <= std::numeric_limits<int>::max()))
    throw InputError(key + ": " + short_dump(v) + " is out of range");
  return static_cast<int>(d);
}

bool json_bool(const json& v, const std::string& key) {
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_number_integer() && (v.get<int>() == 0 || v.get<int>() == 1)) return v.get<int>() == 1;
  throw InputError(key + ": expected true or false, got " + short_dump(v));
}

std::string json_string(const json& v, const std::string& key) {
  if (!v.is_string()) throw InputError(key + ": expected a string, got " + short_dump(v));
  return v.get<std::string>();
}

std::vector<double> json_numbers(const json& v, const std::string& key, int n) {
  if (v.is_number()) return std::vector<double>(n, json_number(v, key));
  if (!v.is_array() || static_cast<int>(v.size()) != n)
    throw InputError(key + ": expected a number or " + std::to_string(n) + " numbers, got " + short_dump(v));
  std::vector<double> out;
  for (const auto& e : v) out.push_back(json_number(e, key));
  return out;
}

std::vector<int> json_ints(const json& v, const std::string& key) {
  if (!v.is_array()) throw InputError(key + ": expected a list of integers, got " + short_dump(v));
  std::vector<int> out;
  for (const auto& e : v) out.push_back(json_int(e, key));
  return out;
}

}  // namespace pw::train
