// Errors that reach the user. Every layer throws these with one clear line naming the thing
// (file, config key, tensor) and the reason; the CLI prints it and exits 1 (InputError) or 2 (UsageError).
#pragma once
#include <stdexcept>
#include <string>

namespace pw {

// Bad input: a file that cannot be read, a corrupt header, a bad config value, a wrong shape.
struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Bad command-line usage (unknown option, missing argument, conflicting flags).
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace pw
