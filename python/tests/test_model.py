"""Model.load / apply / info and train(): equal to the CLI on the same inputs, Python errors with its messages."""
import json
import os
import subprocess

import numpy as np
import pytest

import patchwork as pw
from conftest import tiny_config


def cli_apply(cli, model, image, out, *options):
    subprocess.run([cli, "apply", "--model", str(model), "--in", str(image), "--out", str(out), "--device", "cpu",
                    "--quiet", *options], check=True)
    return pw.read_nifti(out)


@pytest.mark.parametrize("out_type", ["atls", "float32", "mask:0.3,0.6"])
def test_apply_equals_cli(cli, model_path, phantom_dir, tmp_path, out_type):
    model = pw.Model.load(model_path, device="cpu")
    image, affine, _ = pw.read_nifti(phantom_dir / "img2.nii.gz")
    ours = model.apply(image, affine, out_type=out_type, quiet=True)
    theirs, theirs_affine, _ = cli_apply(cli, model_path, phantom_dir / "img2.nii.gz", tmp_path / "o.nii.gz",
                                         "--out-type", out_type)
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    assert np.array_equal(ours, theirs)  # bit for bit
    if out_type == "atls":
        assert set(np.unique(ours)) <= {0, 1, 2} and (ours > 0).any()


def test_apply_options_equal_cli(cli, model_path, phantom_dir, tmp_path):
    model = pw.Model.load(model_path, device="cpu")
    image, affine, _ = pw.read_nifti(phantom_dir / "img1.nii.gz")
    ours, ours_affine = model.apply(image, affine, generate_type="random", num_patches=6, seed=5, window="cos",
                                    sampling_factor=2, quiet=True, return_affine=True)
    theirs, theirs_affine, _ = cli_apply(cli, model_path, phantom_dir / "img1.nii.gz", tmp_path / "o.nii.gz",
                                         "--generate-type", "random", "--num-patches", "6", "--seed", "5",
                                         "--window", "cos", "--sampling-factor", "2")
    assert ours.shape == theirs.shape == (80, 80)
    assert np.array_equal(ours, theirs)
    assert np.allclose(ours_affine, theirs_affine, atol=1e-5)


def test_info(model_path):
    info = pw.Model.load(model_path, device="cpu").info()
    assert info["ndim"] == 2 and info["image_channels"] == 1
    assert info["categorical"] and info["labels"] == [1, 2]
    assert len(info["thresholds"]) == 2
    assert info["scheme"]["depth"] == 2
    assert info["training"]["iterations"] == 3


def test_apply_bad_input(model_path, phantom_dir):
    model = pw.Model.load(model_path, device="cpu")
    image, affine, _ = pw.read_nifti(phantom_dir / "img0.nii.gz")
    with pytest.raises(ValueError, match="affine: expected a 4x4 matrix"):
        model.apply(image, affine[:3])
    with pytest.raises(ValueError, match="dtype complex64 not supported"):
        model.apply(image.astype(np.complex64), affine)
    bad = image.copy()
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match="image: image contains NaN or infinite values"):
        model.apply(bad, affine, quiet=True)
    with pytest.raises(ValueError, match="the model expects 1 image channel"):
        model.apply([image, image], affine, quiet=True)
    with pytest.raises(ValueError, match="size differs"):
        model.apply([image, image[:20]], affine, quiet=True)
    with pytest.raises(ValueError, match="^--window 'round': expected flat, cos or cos2$"):
        model.apply(image, affine, window="round")
    with pytest.raises(ValueError, match="--lazy-fraction must be in"):
        model.apply(image, affine, lazy_fraction=0)
    with pytest.raises(TypeError, match="did you mean 'num_patches'"):
        model.apply(image, affine, num_patch=3)


def test_load_errors(tmp_path, phantom_dir):
    with pytest.raises(OSError, match="nothing.safetensors"):
        pw.Model.load(tmp_path / "nothing.safetensors")
    with pytest.raises(ValueError, match="img0.nii.gz"):
        pw.Model.load(phantom_dir / "img0.nii.gz")
    with pytest.raises(ValueError, match="--device must be cpu or cuda"):
        pw.Model.load(phantom_dir / "img0.nii.gz", device="tpu")


def test_train_callback_stops(phantom_dir, tmp_path):
    seen = []

    def callback(record):
        seen.append(record)
        return record["it"] < 2  # False after the second iteration: stop

    cfg = tiny_config(num_its=50)
    for p in cfg["dataset"]["pairs"]:
        p["image"], p["label"] = str(phantom_dir / p["image"]), str(phantom_dir / p["label"])
    out = tmp_path / "m.safetensors"
    r = pw.train(cfg, out=out, callback=callback, device="cpu", quiet=True)
    assert [s["it"] for s in seen] == [1, 2]
    assert len(seen[0]["loss"]) == 2 and all(np.isfinite(seen[0]["loss"]))
    assert "val_dice" in seen[1]  # validation_every 2
    assert r["iterations"] == 2 and out.exists()
    assert pw.Model.load(out, device="cpu").info()["training"]["iterations"] == 2
    log = [json.loads(line) for line in open(str(out) + ".log.jsonl")]
    assert log[0] == seen[0]  # the callback sees the log's lines


def test_train_callback_error_propagates(phantom_dir, tmp_path):
    def callback(record):
        raise RuntimeError("stop here")

    cfg = tiny_config(num_its=5)
    for p in cfg["dataset"]["pairs"]:
        p["image"], p["label"] = str(phantom_dir / p["image"]), str(phantom_dir / p["label"])
    with pytest.raises(RuntimeError, match="stop here"):
        pw.train(cfg, out=tmp_path / "m.safetensors", callback=callback, device="cpu", quiet=True)
    assert not (tmp_path / "m.safetensors").exists()


def test_train_errors(tmp_path):
    with pytest.raises(OSError, match="config file not found"):
        pw.train(tmp_path / "missing.json", out=tmp_path / "m.safetensors")
    cfg = tiny_config()
    cfg["num_itz"] = 3
    with pytest.raises(ValueError, match="did you mean 'num_its'"):
        pw.train(cfg, out=tmp_path / "m.safetensors", device="cpu")
