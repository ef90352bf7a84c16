// Splitting a batch of cases across the processes of a cluster job (`patchwork apply --in-dir`): shard K of
// N (K counted from 0) takes the cases at positions K, K+N, K+2N, .. of the case list sorted by name, so N
// shards cover every case exactly once and no two write the same output. Where the shard comes from, first
// match wins:
//   1. --shard K/N on the command line;
//   2. OMPI_COMM_WORLD_RANK / OMPI_COMM_WORLD_SIZE (under `mpirun -np N`, Open MPI);
//   3. SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT (a SLURM job array; K = ID - SLURM_ARRAY_TASK_MIN);
//   4. otherwise 0/1: every case.
#pragma once
#include <cstddef>
#include <functional>
#include <string>
#include <vector>

namespace pw::apply {

struct Shard {
  int index = 0;  // K, from 0
  int count = 1;  // N
  std::string source = "";  // where it came from ("--shard", "OMPI_COMM_WORLD_*", "SLURM_ARRAY_*"), for messages
};

// "K/N" with 0 <= K < N; anything else is a pw::UsageError naming the text.
Shard parse_shard(const std::string& text);

// The shard by the order above; `option` is the --shard text (empty: not given), `getenv` reads the
// environment (std::getenv in the CLI; a map in tests). Bad environment values are a pw::UsageError naming
// the variable.
Shard pick_shard(const std::string& option, const std::function<const char*(const char*)>& getenv);

// The positions (ascending) in a sorted list of n cases that belong to the shard.
std::vector<size_t> shard_positions(size_t n, const Shard& shard);

}  // namespace pw::apply
