// `patchwork eval --pred P --ref R [--labels 1,2,..] [--json]`: Dice, volumes and HD95 per label.
//
// Grids: when both files share dims and affine (within 1e-3 mm) the label maps are compared
// voxel by voxel. Otherwise the prediction is resampled onto the reference grid with nearest
// neighbour through the two affines (world = affine * voxel; outside the prediction = 0) and the
// output says so ("resampled": true). Distances use the reference grid's voxel spacing.
#include <CLI/CLI.hpp>
#include <Eigen/Dense>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>

#include "cli/commands.h"
#include "apply/metrics.h"
#include "io/error.h"
#include "io/nifti.h"

namespace pw::cli {

namespace {

std::vector<int32_t> read_labels(const Volume& v, const std::string& name) {
  if (v.ndim > 3)
    for (int d = 3; d < v.ndim; ++d)
      if (v.dims[d] > 1) throw InputError(name + ": a label map must be 2-D or 3-D (this has more dimensions)");
  std::vector<double> d = v.to_double();
  std::vector<int32_t> out(d.size());
  for (size_t i = 0; i < d.size(); ++i) {
    if (!std::isfinite(d[i])) throw InputError(name + ": label map contains NaN or infinite values");
    // A probability map (apply --out-type float32) passed by mistake would be rounded into labels: refuse
    // any value that is not an integer (up to float rounding of stored integers, e.g. through scl_slope).
    if (std::fabs(d[i] - std::nearbyint(d[i])) > 1e-4 * std::max(1.0, std::fabs(d[i]))) {
      const int64_t nx = v.dims[0], ny = v.ndim >= 2 ? v.dims[1] : 1, k = static_cast<int64_t>(i);
      char msg[160];
      std::snprintf(msg, sizeof msg, "holds non-integer values (e.g. %.6g at voxel (%lld,%lld,%lld))", d[i],
                    static_cast<long long>(k % nx), static_cast<long long>(k / nx % ny),
                    static_cast<long long>(k / (nx * ny)));
      throw InputError(name + ": " + msg + ": eval compares label maps; use apply --out-type atls");
    }
    out[i] = static_cast<int32_t>(std::lround(d[i]));
  }
  return out;
}

}  // namespace

void add_eval(CLI::App& app) {
  auto* cmd = app.add_subcommand("eval", "Dice, volume difference and 95% Hausdorff distance (mm) per label");
  struct Opts {
    std::string pred, ref;
    std::vector<int> labels;
    bool json = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--pred", o->pred, "predicted label map (NIfTI)")->required();
  cmd->add_option("--ref", o->ref, "reference label map (NIfTI)")->required();
  cmd->add_option("--labels", o->labels, "label values to evaluate (default: every non-zero value)")->delimiter(',');
  cmd->add_flag("--json", o->json, "print JSON instead of a table");
  cmd->callback([o]() {
    Volume pv = read_nifti(o->pred), rv = read_nifti(o->ref);
    std::vector<int32_t> pred = read_labels(pv, o->pred), ref = read_labels(rv, o->ref);
    const std::array<int64_t, 3> dims = {rv.dims[0], rv.ndim >= 2 ? rv.dims[1] : 1, rv.ndim >= 3 ? rv.dims[2] : 1};
    const Eigen::Matrix4d Ar = rv.affine(), Ap = pv.affine();
    bool same = pv.dims[0] == rv.dims[0] && pv.dims[1] == rv.dims[1] && pv.dims[2] == rv.dims[2] &&
                (Ar - Ap).cwiseAbs().maxCoeff() < 1e-3;
    if (!same) {
      const Eigen::Matrix4d M = Ap.inverse() * Ar;  // reference voxel -> prediction voxel
      const int64_t px = pv.dims[0], py = pv.dims[1], pz = pv.dims[2];
      std::vector<int32_t> res(static_cast<size_t>(dims[0] * dims[1] * dims[2]), 0);
      for (int64_t z = 0; z < dims[2]; ++z)
        for (int64_t y = 0; y < dims[1]; ++y)
          for (int64_t x = 0; x < dims[0]; ++x) {
            Eigen::Vector4d q = M * Eigen::Vector4d(double(x), double(y), double(z), 1.0);
            int64_t i = std::llround(q[0]), j = std::llround(q[1]), k = std::llround(q[2]);
            if (i < 0 || j < 0 || k < 0 || i >= px || j >= py || k >= pz) continue;
            res[x + dims[0] * (y + dims[1] * z)] = pred[i + px * (j + py * k)];
          }
      pred.swap(res);
    }
    std::array<double, 3> h;
    for (int a = 0; a < 3; ++a) h[a] = Ar.block<3, 1>(0, a).norm();
    std::vector<LabelMetrics> m = evaluate_labels(pred.data(), ref.data(), dims, h, o->labels);
    if (o->json) {
      nlohmann::json j;
      j["pred"] = o->pred;
      j["ref"] = o->ref;
      j["resampled"] = !same;
      j["labels"] = nlohmann::json::array();
      double mean = 0;
      for (const auto& l : m) {
        nlohmann::json e = {{"label", l.label},           {"dice", l.dice},
                            {"voxels_pred", l.voxels_pred}, {"voxels_ref", l.voxels_ref},
                            {"volume_pred_ml", l.volume_pred_ml}, {"volume_ref_ml", l.volume_ref_ml},
                            {"volume_diff_ml", l.volume_diff_ml}};
        e["volume_diff_rel"] = std::isfinite(l.volume_diff_rel) ? nlohmann::json(l.volume_diff_rel) : nlohmann::json();
        e["hd95_mm"] = std::isfinite(l.hd95_mm) ? nlohmann::json(l.hd95_mm) : nlohmann::json();  // null = one side empty
        j["labels"].push_back(e);
        mean += l.dice;
      }
      j["mean_dice"] = m.empty() ? nlohmann::json() : nlohmann::json(mean / m.size());
      std::cout << j.dump(2) << "\n";
    } else {
      if (!same) std::cout << "note: grids differ; the prediction was resampled onto the reference grid (nearest)\n";
      std::printf("%8s %8s %12s %12s %12s %10s\n", "label", "dice", "vol_pred_ml", "vol_ref_ml", "vol_diff_ml",
                  "hd95_mm");
      for (const auto& l : m)
        std::printf("%8d %8.4f %12.3f %12.3f %12.3f %10.3f\n", l.label, l.dice, l.volume_pred_ml, l.volume_ref_ml,
                    l.volume_diff_ml, l.hd95_mm);
    }
  });
}

}  // namespace pw::cli
