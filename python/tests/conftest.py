"""Shared fixtures: 2-D demo phantoms on disk and a model trained on them in a few seconds."""
import json
import os

import numpy as np
import pytest

import patchwork as pw


def tiny_config(num_its=3):
    """The tiny 2-D config of the C++ train CLI tests (tests/train/cli_fixture.h)."""
    return {
        "depth": 2, "ndim": 2,
        "scheme": {"patch_size": [16, 16], "fov_rel": 0.9, "destvox_rel": 1},
        "categorical_label": [1, 2], "categorical": True, "normalize_input": "m0s1",
        "network": {"features": [4, 8]},
        "num_its": num_its, "num_patches": 4, "batch_size": 4, "validation_every": 2,
        "dataset": {"pairs": [{"image": f"img{i}.nii.gz", "label": f"lab{i}.nii.gz"} for i in range(3)],
                    "validation": ["img2"]},
    }


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("phantoms")
    for i in range(3):
        image, labels, affine = pw.phantom(dims=(40, 40, 1), num_labels=2, seed=11 + i)
        pw.write_nifti(d / f"img{i}.nii.gz", image, affine)
        pw.write_nifti(d / f"lab{i}.nii.gz", labels, affine)
    return d


@pytest.fixture(scope="session")
def model_path(phantom_dir):
    cwd = os.getcwd()
    os.chdir(phantom_dir)  # the config's relative dataset paths
    try:
        r = pw.train(tiny_config(), out=phantom_dir / "model.safetensors", device="cpu", quiet=True)
    finally:
        os.chdir(cwd)
    assert r["iterations"] == 3
    return phantom_dir / "model.safetensors"


@pytest.fixture(scope="session")
def cli():
    exe = os.environ.get("PATCHWORK_BIN")
    if not exe or not os.path.exists(exe):
        pytest.skip("PATCHWORK_BIN (the patchwork program) not set: ctest sets it")
    return exe
