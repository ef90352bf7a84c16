#!/usr/bin/env python3
"""`patchwork convert` checked by nibabel (an independent reader).

For every readable file of tests/data/nifti-corpus (valid ones) and tests/data/nifti-header-zoo, run
`patchwork convert IN OUT.nii.gz` (default dtype), then load IN and OUT with nibabel and compare:
  * values: OUT's get_fdata() equals IN's scaled values computed in float64 from IN's raw data (exactly
    when the dtype is kept; float32-rounded when IN is scaled and OUT is float32); RGB24: the raw bytes;
  * affine: OUT's nibabel affine equals Patchwork's rule applied to IN's header (sform if sform_code > 0,
    else qform if qform_code > 0, else diag(pixdim)), within float32 precision.
Files that nibabel itself cannot load (ext_gap_be.nii, see the corpus MANIFEST) and complex data are skipped.
Usage: nibabel_convert_check.py PATCHWORK_BIN TEST_DATA_DIR (tests/data). Exit 77 (skipped) when nibabel is missing.
"""
import os
import subprocess
import sys
import tempfile

try:
    import nibabel as nib
    import numpy as np
except ImportError:
    print("skipped: python3 nibabel/numpy not installed (apt-get install python3-nibabel)")
    sys.exit(77)


def rule_affine(hdr):
    if int(hdr["sform_code"]) > 0:
        return hdr.get_sform()
    if int(hdr["qform_code"]) > 0:
        return hdr.get_qform()
    z = [abs(float(p)) if np.isfinite(p) and p != 0 else 1.0 for p in hdr["pixdim"][1:4]]
    return np.diag(z + [1.0])


def main():
    exe, data = sys.argv[1], sys.argv[2]
    inputs = []
    corpus = os.path.join(data, "nifti-corpus")
    zoo = os.path.join(data, "nifti-header-zoo", "niivue-demos-images")
    for d in (corpus, zoo):  # the data are in the repository: missing ones are a failure, not a skip
        if not os.path.isdir(d):
            print(f"FAIL: test data missing: {d}")
            return 1
    for name in sorted(os.listdir(corpus)):
        if name.startswith("bad_") or not (name.endswith(".nii") or name.endswith(".nii.gz") or name.endswith(".hdr")):
            continue
        inputs.append(os.path.join(corpus, name))
    for name in sorted(os.listdir(zoo)):
        if name.endswith(".nii.gz") or name.endswith(".hdr"):
            inputs.append(os.path.join(zoo, name))
    failures, checked, skipped = [], 0, []
    with tempfile.TemporaryDirectory() as tmp:
        for path in inputs:
            name = os.path.basename(path)
            try:
                src = nib.load(path)
                src_hdr = src.header
                dt = src.get_data_dtype()
            except Exception as e:  # nibabel cannot read it: nothing to compare against
                skipped.append(f"{name} (nibabel: {type(e).__name__})")
                continue
            if dt.kind == "c":
                skipped.append(f"{name} (complex)")
                continue
            out = os.path.join(tmp, name + ".conv.nii.gz")
            r = subprocess.run([exe, "convert", path, out], capture_output=True, text=True)
            if r.returncode != 0:
                failures.append(f"{name}: convert exit {r.returncode}: {r.stderr.strip()}")
                continue
            dst = nib.load(out)
            # Affine: nibabel's view of OUT vs Patchwork's rule on IN's header.
            want = rule_affine(src_hdr)
            got = dst.affine
            tol = 1e-5 * (1 + np.abs(want).max())
            if not np.allclose(got, want, rtol=0, atol=tol):
                failures.append(f"{name}: affine differs by {np.abs(got - want).max():.3g}")
            # Values.
            if dt.names is not None:  # RGB24
                a = np.asarray(src.dataobj)
                b = np.asarray(dst.dataobj)
                if a.shape != b.shape or a.tobytes() != b.tobytes():
                    failures.append(f"{name}: RGB bytes differ")
            else:
                # IN's values in float64 from the raw data (nibabel's get_fdata may scale in float32).
                # (after nib.load the header's scl_* read NaN: the scaling lives in dataobj.slope/inter)
                slope, inter = float(src.dataobj.slope), float(src.dataobj.inter)
                raw = np.asarray(src.dataobj.get_unscaled()).astype(np.float64)
                scaled = not (slope == 1 and inter == 0)
                a = raw * slope + inter if scaled else raw
                b = dst.get_fdata(dtype=np.float64)
                if a.shape != b.shape:
                    failures.append(f"{name}: shape {b.shape} != {a.shape}")
                else:
                    if scaled:
                        ok = np.allclose(b, a.astype(np.float32).astype(np.float64), rtol=0, atol=0, equal_nan=True)
                    else:
                        ok = np.array_equal(b, a, equal_nan=True)
                    if not ok:
                        failures.append(f"{name}: values differ (max {np.nanmax(np.abs(b - a)):.3g})")
            checked += 1
    for s in skipped:
        print("skipped:", s)
    for f in failures:
        print("FAIL:", f)
    print(f"nibabel {nib.__version__}: {checked} converted files checked, {len(skipped)} skipped, "
          f"{len(failures)} failed")
    return 1 if failures or checked < 60 else 0


if __name__ == "__main__":
    sys.exit(main())
