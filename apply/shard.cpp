#include "apply/shard.h"

#include <cstdlib>

#include "io/error.h"

namespace pw::apply {

namespace {

// A whole non-negative decimal number, or -1.
long parse_count(const std::string& s) {
  if (s.empty() || s.size() > 9 || s.find_first_not_of("0123456789") != std::string::npos) return -1;
  return std::strtol(s.c_str(), nullptr, 10);
}

Shard make_shard(long k, long n, const std::string& what, const std::string& source) {
  if (k < 0 || n < 1 || k >= n)
    throw UsageError(what + ": expected K/N with N >= 1 and 0 <= K < N (K counts from 0)");
  return Shard{static_cast<int>(k), static_cast<int>(n), source};
}

}  // namespace

Shard parse_shard(const std::string& text) {
  const size_t slash = text.find('/');
  const std::string what = "--shard '" + text + "'";
  if (slash == std::string::npos) throw UsageError(what + ": expected K/N, e.g. 0/4 (K counts from 0)");
  return make_shard(parse_count(text.substr(0, slash)), parse_count(text.substr(slash + 1)), what, "--shard");
}

Shard pick_shard(const std::string& option, const std::function<const char*(const char*)>& getenv) {
  if (!option.empty()) return parse_shard(option);
  auto var = [&](const char* name) -> long {
    const char* v = getenv(name);
    if (!v) return -2;
    const long x = parse_count(v);
    if (x < 0) throw UsageError(std::string(name) + "='" + v + "': expected a whole number");
    return x;
  };
  const long rank = var("OMPI_COMM_WORLD_RANK"), size = var("OMPI_COMM_WORLD_SIZE");
  if (rank >= 0 && size >= 0)
    return make_shard(rank, size, "OMPI_COMM_WORLD_RANK/SIZE " + std::to_string(rank) + "/" + std::to_string(size),
                      "OMPI_COMM_WORLD_RANK/SIZE");
  const long id = var("SLURM_ARRAY_TASK_ID"), count = var("SLURM_ARRAY_TASK_COUNT");
  if (id >= 0 && count >= 0) {
    const long lo = var("SLURM_ARRAY_TASK_MIN");
    const long k = id - (lo >= 0 ? lo : 0);
    return make_shard(k, count,
                      "SLURM_ARRAY_TASK_ID " + std::to_string(id) + " (from " + std::to_string(lo >= 0 ? lo : 0) +
                          ") of SLURM_ARRAY_TASK_COUNT " + std::to_string(count) +
                          " (use a contiguous --array range)",
                      "SLURM_ARRAY_TASK_ID/COUNT");
  }
  return Shard{};
}

std::vector<size_t> shard_positions(size_t n, const Shard& shard) {
  std::vector<size_t> out;
  for (size_t i = static_cast<size_t>(shard.index); i < n; i += static_cast<size_t>(shard.count)) out.push_back(i);
  return out;
}

}  // namespace pw::apply
