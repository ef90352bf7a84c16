// Number checks shared by the commands' options (cli/commands.h).
#include <CLI/CLI.hpp>

#include <cmath>
#include <string>

#include "cli/commands.h"

namespace pw::cli {

namespace {

CLI::Validator number_check(bool allow_zero) {
  const std::string want = allow_zero ? "a number >= 0" : "a number > 0";
  return CLI::Validator(
      [allow_zero, want](std::string& value) -> std::string {
        double v = 0;
        try {
          size_t used = 0;
          v = std::stod(value, &used);
          if (used != value.size()) return "must be " + want + ", got '" + value + "'";
        } catch (const std::exception&) {
          return "must be " + want + ", got '" + value + "'";
        }
        if (!std::isfinite(v) || v < 0 || (!allow_zero && v == 0)) return "must be " + want + ", got " + value;
        return {};
      },
      allow_zero ? "NUMBER>=0" : "NUMBER>0");
}

}  // namespace

CLI::Validator positive() { return number_check(false); }
CLI::Validator non_negative() { return number_check(true); }

}  // namespace pw::cli
