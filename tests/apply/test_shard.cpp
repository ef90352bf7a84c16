// Splitting an apply batch across a cluster job (apply/shard.h): the K/N text, where the shard comes from,
// and that N shards cover every case exactly once.
#include <doctest/doctest.h>

#include <map>
#include <string>
#include <vector>

#include "apply/shard.h"
#include "io/error.h"

using namespace pw;
using apply::Shard;

namespace {

// An environment made of a map.
struct Env {
  std::map<std::string, std::string> vars;
  const char* operator()(const char* name) const {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  }
};

}  // namespace

TEST_CASE("shard: K/N text; bad ones are usage errors naming the text") {
  const Shard s = apply::parse_shard("2/5");
  CHECK(s.index == 2);
  CHECK(s.count == 5);
  for (const char* bad : {"5/5", "1/0", "-1/3", "1", "a/3", "1/3/4", "", "1/", "/2", "1.5/3"})
    CHECK_THROWS_WITH_AS(apply::parse_shard(bad), doctest::Contains(("--shard '" + std::string(bad) + "'").c_str()),
                         UsageError);
}

TEST_CASE("shard: --shard before OMPI_COMM_WORLD_* before SLURM_ARRAY_*; none: every case") {
  Env env;
  CHECK(apply::pick_shard("", env).count == 1);
  env.vars = {{"SLURM_ARRAY_TASK_ID", "7"}, {"SLURM_ARRAY_TASK_COUNT", "4"}, {"SLURM_ARRAY_TASK_MIN", "5"}};
  Shard s = apply::pick_shard("", env);
  CHECK(s.index == 2);  // 7 - 5
  CHECK(s.count == 4);
  env.vars["OMPI_COMM_WORLD_RANK"] = "1";
  env.vars["OMPI_COMM_WORLD_SIZE"] = "3";
  s = apply::pick_shard("", env);
  CHECK(s.index == 1);
  CHECK(s.count == 3);
  s = apply::pick_shard("0/2", env);
  CHECK(s.index == 0);
  CHECK(s.count == 2);
  env.vars = {{"SLURM_ARRAY_TASK_ID", "9"}, {"SLURM_ARRAY_TASK_COUNT", "4"}};  // a range with steps, or no MIN
  CHECK_THROWS_WITH_AS(apply::pick_shard("", env), doctest::Contains("SLURM_ARRAY_TASK_ID 9"), UsageError);
  env.vars = {{"OMPI_COMM_WORLD_RANK", "x"}, {"OMPI_COMM_WORLD_SIZE", "2"}};
  CHECK_THROWS_WITH_AS(apply::pick_shard("", env), doctest::Contains("OMPI_COMM_WORLD_RANK='x'"), UsageError);
}

TEST_CASE("shard: N shards cover every case exactly once, round-robin over the sorted list, N = 1..7") {
  for (size_t cases : {0, 1, 5, 13}) {
    for (int n = 1; n <= 7; ++n) {
      std::vector<int> seen(cases, 0);
      for (int k = 0; k < n; ++k) {
        const auto pos = apply::shard_positions(cases, Shard{k, n, ""});
        for (size_t i = 0; i < pos.size(); ++i) {
          CHECK(pos[i] % n == static_cast<size_t>(k));
          if (i > 0) CHECK(pos[i] > pos[i - 1]);
          ++seen.at(pos[i]);
        }
      }
      for (size_t i = 0; i < cases; ++i) CHECK(seen[i] == 1);
    }
  }
}
