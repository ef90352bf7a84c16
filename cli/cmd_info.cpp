// `patchwork info FILE [--json] [--stats]`: a NIfTI file's header, geometry and extensions, read without the
// data (io/nifti.h read_nifti_header: a .nii.gz is inflated only up to vox_offset). --stats reads the data
// as a stream (constant memory) for min/max/mean, which also checks them as read_nifti does.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <limits>
#include <memory>
#include <sstream>
#include <string>

#include "cli/commands.h"
#include "io/error.h"
#include "io/nifti.h"
#include "io/nifti_json.h"
#include "io/volume_visit.h"

namespace pw::cli {

namespace {

// Scaled values over the whole data (NaN and infinities counted apart, not in min/max/mean).
struct Stats {
  uint64_t voxels = 0, finite = 0;
  double min = std::numeric_limits<double>::infinity(), max = -std::numeric_limits<double>::infinity(), sum = 0;
  double mean() const { return finite ? sum / static_cast<double>(finite) : std::nan(""); }
};

// Reads `file` once, streaming its data (io/nifti.h read_nifti_streaming). Throws pw::InputError.
NiftiHeader read_with_stats(const std::string& file, Stats& st) {
  return read_nifti_streaming(file, [&](const NiftiHeader& h, const uint8_t* data, size_t n) {
    const bool scaled = h.is_scaled();
    const bool scalar = visit_scalar(h.datatype, [&](auto zero) {
      using T = decltype(zero);
      const size_t k = n / sizeof(T);
      double part = 0;
      for (size_t i = 0; i < k; ++i) {
        T x;
        std::memcpy(&x, data + i * sizeof(T), sizeof(T));
        double val = static_cast<double>(x);
        if (scaled) val = val * h.scl_slope + h.scl_inter;
        if (!std::isfinite(val)) continue;
        ++st.finite;
        st.min = std::min(st.min, val);
        st.max = std::max(st.max, val);
        part += val;
      }
      st.sum += part;
      st.voxels += k;
    });
    if (!scalar) throw InputError(file + ": --stats: " + nifti_datatype_name(h.datatype) + " data have no scalar values");
  });
}

std::string info_text(const std::string& file, const NiftiHeader& v) {
  std::ostringstream o;
  o.precision(8);
  auto join = [](auto begin, auto end, const char* sep) {
    std::ostringstream s;
    s.precision(8);
    for (auto it = begin; it != end; ++it) s << (it == begin ? "" : sep) << *it;
    return s.str();
  };
  o << "file          " << file << "\n";
  o << "format        NIfTI-" << v.version << ", " << (v.big_endian_on_disk ? "big" : "little") << " endian\n";
  o << "dims          " << join(v.dims.begin(), v.dims.begin() + v.ndim, " x ") << "\n";
  o << "datatype      " << nifti_datatype_name(v.datatype) << " (code " << v.datatype << ", bitpix " << v.bitpix
    << ")\n";
  o << "pixdim        " << join(v.pixdim.begin() + 1, v.pixdim.begin() + 1 + v.ndim, " ") << " (qfac "
    << (v.pixdim[0] < 0 ? -1 : 1) << ")\n";
  if (v.is_scaled())
    o << "scaling       value = raw * " << v.scl_slope << " + " << v.scl_inter << "\n";
  else
    o << "scaling       none (scl_slope " << v.scl_slope << ")\n";
  o << "qform_code    " << v.qform_code << "\nsform_code    " << v.sform_code << "\n";
  o << "affine        from the " << (v.sform_code > 0 ? "sform" : v.qform_code > 0 ? "qform" : "pixdim (method 1)")
    << "\n";
  const Eigen::Matrix4d a = v.affine();
  for (int r = 0; r < 3; ++r) {
    char line[160];
    std::snprintf(line, sizeof line, "              [%12.6g %12.6g %12.6g %12.6g]\n", a(r, 0), a(r, 1), a(r, 2), a(r, 3));
    o << line;
  }
  o << "vox_offset    " << v.vox_offset << "\n";
  o << "descrip       " << v.descrip << "\n";
  o << "intent        code " << v.intent_code << (v.intent_name.empty() ? "" : ", name " + v.intent_name) << "\n";
  o << "extensions    " << v.extensions.size();
  for (size_t i = 0; i < v.extensions.size(); ++i)
    o << (i ? ", " : ": ") << "code " << v.extensions[i].code << " (" << v.extensions[i].disk_size() << " bytes)";
  o << "\n";
  return o.str();
}

nlohmann::json stats_json(const Stats& st) {
  const double nan = std::nan("");
  return {{"voxels", st.voxels}, {"nonfinite", st.voxels - st.finite}, {"min", st.finite ? st.min : nan},
          {"max", st.finite ? st.max : nan}, {"mean", st.mean()}};  // NaN is written as null
}

std::string stats_text(const Stats& st) {
  std::ostringstream o;
  o.precision(8);
  o << "stats         ";
  if (st.finite)
    o << "min " << st.min << ", max " << st.max << ", mean " << st.mean() << " over " << st.finite << " voxels";
  else
    o << "no finite values";
  if (st.voxels != st.finite) o << " (" << st.voxels - st.finite << " NaN or infinite)";
  o << "\n";
  return o.str();
}

}  // namespace

void add_info(CLI::App& app) {
  struct Options {
    std::string file;
    bool json = false;
    bool stats = false;
  };
  auto opt = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("info", "Print a NIfTI file's header, geometry and extensions");
  cmd->add_option("FILE", opt->file, "A .nii, .nii.gz, .hdr or .img file")->required();
  cmd->add_flag("--json", opt->json, "Print one JSON object instead of text");
  cmd->add_flag("--stats", opt->stats,
                "Also read the data (streamed, constant memory; checks them too) for min/max/mean of the "
                "scaled values");
  cmd->callback([opt] {
    // Without --stats only the header and extensions are read (never the data).
    Stats st;
    const NiftiHeader v = opt->stats ? read_with_stats(opt->file, st) : read_nifti_header(opt->file);
    if (opt->json) {
      nlohmann::json j = nifti_header_json(v);
      if (opt->stats) j["stats"] = stats_json(st);
      std::cout << j.dump(1) << "\n";
    } else {
      std::cout << info_text(opt->file, v) << (opt->stats ? stats_text(st) : std::string());
    }
  });
}

}  // namespace pw::cli
