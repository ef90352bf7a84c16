#include "io/nifti_json.h"

namespace pw {

nlohmann::json nifti_header_json(const NiftiHeader& v) {
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

}  // namespace pw
