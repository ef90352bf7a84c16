// A NIfTI header as JSON: what `patchwork info --json` prints and the Python package's read_nifti returns as
// its header dict (dims, datatype, pixdim, scaling, qform/sform codes, affine, descrip, intent, extensions).
#pragma once
#include <nlohmann/json.hpp>

#include "io/nifti.h"

namespace pw {

nlohmann::json nifti_header_json(const NiftiHeader& header);

}  // namespace pw
