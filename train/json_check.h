// Small helpers for reading JSON configs strictly: unknown keys are errors naming the key
// (with a "did you mean" when a known key is close), wrong types name the key and the type.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace pw::train {

// Throws pw::InputError("<where>: unknown key 'K' (did you mean 'X'?)") for the first key of
// object `j` not in `allowed`; also throws when `j` is not an object.
void check_keys(const nlohmann::json& j, const std::vector<std::string>& allowed, const std::string& where);

// The closest of `candidates` to `key` by edit distance, or "" when none is within 2 edits.
std::string closest_key(const std::string& key, const std::vector<std::string>& candidates);

// Typed reads that name the key on a wrong type: pw::InputError("<key>: expected <type>, got <json>").
double json_number(const nlohmann::json& v, const std::string& key);
int json_int(const nlohmann::json& v, const std::string& key);
bool json_bool(const nlohmann::json& v, const std::string& key);  // also accepts 0/1
std::string json_string(const nlohmann::json& v, const std::string& key);
// A number or an array of numbers; a number is repeated `n` times; an array must have n entries.
std::vector<double> json_numbers(const nlohmann::json& v, const std::string& key, int n);
std::vector<int> json_ints(const nlohmann::json& v, const std::string& key);  // an array of integers

}  // namespace pw::train
