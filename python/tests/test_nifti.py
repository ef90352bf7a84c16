"""read_nifti / write_nifti: arrays round-trip, agree with nibabel, and bad input raises."""
import numpy as np
import pytest

import patchwork as pw

AFFINE = np.array([[0.0, -1.5, 0.0, 10.0], [1.25, 0.0, 0.0, -20.0], [0.0, 0.0, 2.0, 5.5], [0, 0, 0, 1]])


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "uint16", "int32", "uint32", "int64", "float32",
                                   "float64"])
@pytest.mark.parametrize("shape", [(5, 4, 3), (5, 4, 3, 2), (7, 6)])
def test_round_trip(tmp_path, dtype, shape):
    rng = np.random.default_rng(3)
    a = (rng.random(shape) * 100).astype(dtype)  # C-ordered: written in NIfTI order (x fastest) all the same
    f = tmp_path / "a.nii.gz"
    pw.write_nifti(f, a, AFFINE, {"descrip": "round trip"})
    b, affine, header = pw.read_nifti(f)
    assert b.dtype == a.dtype and b.shape == a.shape
    assert np.array_equal(a, b)
    assert np.allclose(affine, AFFINE, rtol=0, atol=1e-6)
    assert header["dims"] == list(shape) and header["descrip"] == "round trip"
    assert header["datatype_name"] == dtype


def test_read_is_zero_copy_in_file_order(tmp_path):
    a = np.arange(24, dtype=np.float32).reshape(4, 3, 2)
    pw.write_nifti(tmp_path / "a.nii", a, np.eye(4))
    b, _, _ = pw.read_nifti(tmp_path / "a.nii")
    assert not b.flags.owndata and b.base is not None  # the C++ buffer, kept alive by the array
    assert b.flags.f_contiguous
    assert b[1, 2, 1] == a[1, 2, 1]


def test_agrees_with_nibabel(tmp_path):
    nib = pytest.importorskip("nibabel")
    image, labels, affine = pw.phantom(dims=(12, 10, 8), seed=2)
    pw.write_nifti(tmp_path / "p.nii.gz", image, affine)
    img = nib.load(str(tmp_path / "p.nii.gz"))
    assert np.array_equal(np.asarray(img.dataobj), image)
    assert np.allclose(img.affine, affine, atol=1e-6)
    nib.save(nib.Nifti1Image(labels.astype(np.int16), affine), str(tmp_path / "n.nii.gz"))
    b, a2, _ = pw.read_nifti(tmp_path / "n.nii.gz")
    assert b.dtype == np.int16 and np.array_equal(b, labels)
    assert np.allclose(a2, affine, atol=1e-6)


def test_scaled_data_come_as_float64(tmp_path):
    nib = pytest.importorskip("nibabel")
    img = nib.Nifti1Image(np.arange(6, dtype=np.int16).reshape(3, 2, 1), np.eye(4))
    img.header.set_slope_inter(0.5, 10)
    nib.save(img, str(tmp_path / "s.nii"))
    b, _, header = pw.read_nifti(tmp_path / "s.nii")
    assert header["scaled"] and b.dtype == np.float64
    assert np.array_equal(b, np.arange(6).reshape(3, 2, 1) * 0.5 + 10)


def test_errors(tmp_path):
    with pytest.raises(OSError, match="missing.nii"):
        pw.read_nifti(tmp_path / "missing.nii")
    (tmp_path / "junk.nii").write_bytes(b"\0" * 400)
    with pytest.raises(ValueError, match="junk.nii"):
        pw.read_nifti(tmp_path / "junk.nii")
    with pytest.raises(ValueError, match="dtype complex128 not supported"):
        pw.write_nifti(tmp_path / "c.nii", np.zeros((2, 2), complex), np.eye(4))
    with pytest.raises(ValueError, match="affine: expected a 4x4 matrix"):
        pw.write_nifti(tmp_path / "c.nii", np.zeros((2, 2)), np.eye(3))
    with pytest.raises(ValueError, match="header: key 'bogus'"):
        pw.write_nifti(tmp_path / "c.nii", np.zeros((2, 2)), np.eye(4), {"bogus": 1})
    with pytest.raises(OSError, match="no-such-folder.*No such file or directory"):
        pw.write_nifti(tmp_path / "no-such-folder" / "c.nii", np.zeros((2, 2)), np.eye(4))
    assert not (tmp_path / "c.nii").exists()
