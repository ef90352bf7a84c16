// The `patchwork` subcommands. Each lives in apply/cmd_<name>.cpp and adds itself to the
// CLI11 app; apply/main.cpp lists them. A command's callback throws pw::InputError for bad
// input (exit 1) and pw::UsageError for bad usage (exit 2).
#pragma once

namespace CLI {
class App;
}

namespace pw::cli {

void add_info(CLI::App& app);     // patchwork info FILE [--json]
void add_convert(CLI::App& app);  // patchwork convert IN OUT [--dtype T]

}  // namespace pw::cli
