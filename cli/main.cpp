// patchwork: the command-line program. Exit codes: 0 success, 1 bad input, 2 bad usage.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>
#include <iostream>
#include <string>

#include "cli/commands.h"
#include "io/error.h"
#include "train/distributed.h"

int main(int argc, char** argv) {
  CLI::App app{"patchwork: Deep Neural Patchworks for 2D/3D medical image segmentation"};
  app.set_version_flag("--version", "patchwork 0.1.0");
  app.require_subcommand(1);
  // One line per subcommand (cli/commands.h).
  pw::cli::add_info(app);
  pw::cli::add_convert(app);
  pw::cli::add_apply(app);
  pw::cli::add_eval(app);
  pw::cli::add_demo(app);
  pw::cli::add_train(app);
  if (argc > 1 && argv[1][0] != '-') {  // a first word that names no command
    bool known = false;
    std::string names;
    for (const CLI::App* sub : app.get_subcommands({})) {
      known = known || sub->get_name() == argv[1];
      names += (names.empty() ? "" : ", ") + sub->get_name();
    }
    if (!known) {
      std::cerr << "patchwork: unknown command '" << argv[1] << "' (commands: " << names << "; --help)\n";
      return 2;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  } catch (const pw::UsageError& e) {
    pw::train::end_all_ranks(e.what(), 2);  // under mpirun: every rank stops (returns in one process)
    std::cerr << "patchwork: " << e.what() << "\n";
    return 2;
  } catch (const std::bad_alloc&) {
    pw::train::end_all_ranks("out of memory", 1);
    std::cerr << "patchwork: out of memory\n";
    return 1;
  } catch (const std::exception& e) {
    pw::train::end_all_ranks(e.what(), 1);
    std::cerr << "patchwork: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
