// `patchwork convert IN OUT [--dtype T]`: IN's scaled values written as a .nii/.nii.gz of another datatype.
#include <CLI/CLI.hpp>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "io/atomic_file.h"
#include "io/error.h"
#include "io/nifti.h"

namespace pw::cli {

namespace {

// IN and, for an Analyze-style pair, its companion (.hdr <-> .img, .img.gz): none may be the output.
std::vector<std::filesystem::path> input_files(const std::filesystem::path& in) {
  std::vector<std::filesystem::path> files{in};
  const std::string s = in.string();
  auto swap_ext = [&](const std::string& from, const std::string& to) {
    if (s.size() > from.size() && s.compare(s.size() - from.size(), from.size(), from) == 0)
      files.push_back(s.substr(0, s.size() - from.size()) + to);
  };
  swap_ext(".hdr", ".img");
  swap_ext(".hdr", ".img.gz");
  swap_ext(".img", ".hdr");
  swap_ext(".img.gz", ".hdr");
  return files;
}

}  // namespace

void add_convert(CLI::App& app) {
  struct Options {
    std::string in, out, dtype;
  };
  auto opt = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "convert",
      "Write IN's scaled values to OUT (.nii or .nii.gz) with IN's world affine. Default datatype: IN's own "
      "when IN is unscaled, float32 when it is scaled. Integer outputs round to the nearest integer; a value "
      "that does not fit is an error (nothing is written).");
  cmd->add_option("IN", opt->in, "Input NIfTI (.nii, .nii.gz, .hdr, .img)")->required();
  cmd->add_option("OUT", opt->out, "Output file, .nii or .nii.gz")->required();
  cmd->add_option("--dtype", opt->dtype, "Output datatype")
      ->check(CLI::IsMember({"uint8", "int8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32",
                             "float64"}));
  cmd->callback([opt] {
    const std::string& out = opt->out;
    const bool gz = out.size() > 7 && out.compare(out.size() - 7, 7, ".nii.gz") == 0;
    const bool nii = out.size() > 4 && out.compare(out.size() - 4, 4, ".nii") == 0;
    if (!gz && !nii) throw UsageError("convert: OUT must end in .nii or .nii.gz: " + out);
    check_output(out, input_files(opt->in));
    const Volume in = read_nifti(opt->in);
    int dtype = in.is_scaled() ? nifti_dt::float32 : in.datatype;
    if (!opt->dtype.empty()) dtype = nifti_datatype_from_name(opt->dtype);
    Volume converted;
    try {
      converted = convert_datatype(in, dtype);
    } catch (const InputError& e) {
      throw InputError(opt->in + ": " + e.what());
    }
    write_nifti(converted, out);
  });
}

}  // namespace pw::cli
