// `patchwork info FILE [--json]`: a NIfTI file's header, geometry and extensions.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>

#include "cli/commands.h"
#include "io/nifti.h"

namespace pw::cli {

namespace {

nlohmann::json info_json(const Volume& v) {
  nlohmann::json j;
  j["nifti_version"] = v.version;
  j["dims"] = v.shape();
  j["datatype"] = v.datatype;
  j["datatype_name"] = nifti_datatype_name(v.datatype);
  j["bitpix"] = v.bitpix;
  j["pixdim"] = std::vector<double>(v.pixdim.begin() + 1, v.pixdim.begin() + 1 + v.ndim);
  j["qfac"] = v.pixdim[0] < 0 ? -1 : 1;
  j["scl_slope"] = v.scl_slope;  // NaN is written as null
  j["scl_inter"] = v.scl_inter;
  j["scaled"] = v.is_scaled();
  j["qform_code"] = v.qform_code;
  j["sform_code"] = v.sform_code;
  const Eigen::Matrix4d a = v.affine();
  nlohmann::json rows = nlohmann::json::array();
  for (int r = 0; r < 4; ++r) rows.push_back({a(r, 0), a(r, 1), a(r, 2), a(r, 3)});
  j["affine"] = rows;
  j["affine_source"] = v.sform_code > 0 ? "sform" : v.qform_code > 0 ? "qform" : "pixdim";
  j["vox_offset"] = v.vox_offset;
  j["byte_order"] = v.big_endian_on_disk ? "big" : "little";
  j["descrip"] = v.descrip;
  j["aux_file"] = v.aux_file;
  j["intent_code"] = v.intent_code;
  j["intent_name"] = v.intent_name;
  j["xyzt_units"] = v.xyzt_units;
  nlohmann::json ext = nlohmann::json::array();
  for (const auto& e : v.extensions) ext.push_back({{"code", e.code}, {"size", e.disk_size()}});
  j["extensions"] = ext;
  return j;
}

std::string info_text(const std::string& file, const Volume& v) {
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

}  // namespace

void add_info(CLI::App& app) {
  struct Options {
    std::string file;
    bool json = false;
  };
  auto opt = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("info", "Print a NIfTI file's header, geometry and extensions");
  cmd->add_option("FILE", opt->file, "A .nii, .nii.gz, .hdr or .img file")->required();
  cmd->add_flag("--json", opt->json, "Print one JSON object instead of text");
  cmd->callback([opt] {
    const Volume v = read_nifti(opt->file);
    if (opt->json)
      std::cout << info_json(v).dump(1) << "\n";
    else
      std::cout << info_text(opt->file, v);
  });
}

}  // namespace pw::cli
