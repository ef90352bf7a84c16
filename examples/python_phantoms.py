"""Patchwork from Python on the demo phantoms, in seconds: make a small dataset, train with a callback that
prints the losses (and stops after `--seconds`), apply the model to an unseen phantom, score it with numpy
and show it (a PNG with matplotlib when installed, else as text).

    PYTHONPATH=build/python python3 examples/python_phantoms.py [--seconds 15] [--out patchwork-py-demo]
(or without PYTHONPATH after `pip install .`)
"""
import argparse
import os
import time

import numpy as np

import patchwork as pw

ap = argparse.ArgumentParser()
ap.add_argument("--seconds", type=float, default=15)
ap.add_argument("--out", default="patchwork-py-demo")
args = ap.parse_args()
os.makedirs(args.out, exist_ok=True)

# Four 2-D phantoms with 2 labels for training, one for validation (the demo's generator, one slice).
pairs = []
for i in range(5):
    image, labels, affine = pw.phantom(dims=(64, 64, 1), spacing=(1.5, 1.5, 2.0), num_labels=2, seed=100 + i)
    img, lab = f"{args.out}/case{i}.nii.gz", f"{args.out}/case{i}_label.nii.gz"
    pw.write_nifti(img, image, affine)
    pw.write_nifti(lab, labels, affine)
    pairs.append({"image": os.path.abspath(img), "label": os.path.abspath(lab)})

config = {
    "depth": 2, "ndim": 2,
    "scheme": {"patch_size": [24, 24], "fov_rel": 0.8, "destvox_rel": 1},
    "categorical_label": [1, 2], "categorical": True, "normalize_input": "m0s1",
    "network": {"features": [8, 16]},
    "num_its": 1000, "num_patches": 16, "batch_size": 8, "balance": {"ratio": 0.5},
    "optimizer": {"type": "adam", "lr": 3e-3},
    "dataset": {"pairs": pairs, "validation": ["case4"]},
}

start = time.time()


def progress(record):
    print(f"it {record['it']:4d}  loss per level {np.round(record['loss'], 4)}")
    return time.time() - start < args.seconds  # False: stop here (then validation and the model file)


result = pw.train(config, out=f"{args.out}/model.safetensors", callback=progress, device="cpu", quiet=True)
print(f"trained {result['iterations']} iterations in {result['seconds']:.1f} s, validation Dice "
      f"{np.round(result['validation_dice'], 3)}")

# Apply to an unseen phantom, straight from arrays.
model = pw.Model.load(f"{args.out}/model.safetensors", device="cpu")
print("model:", {k: model.info()[k] for k in ("ndim", "labels", "thresholds")})
image, truth, affine = pw.phantom(dims=(64, 64, 1), spacing=(1.5, 1.5, 2.0), num_labels=2, seed=999)
labels = model.apply(image, affine, out_type="atls", quiet=True)
for k in (1, 2):
    p, t = labels == k, truth == k
    print(f"label {k}: Dice {2 * (p & t).sum() / max(1, p.sum() + t.sum()):.3f}")
pw.write_nifti(f"{args.out}/prediction.nii.gz", labels, affine)

try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 2, figsize=(8, 4))
    ax[0].imshow(image.T, cmap="gray", origin="lower")
    ax[1].imshow(image.T, cmap="gray", origin="lower")
    ax[1].imshow(np.ma.masked_equal(labels.T, 0), cmap="autumn", alpha=0.6, origin="lower")
    fig.savefig(f"{args.out}/slice.png")
    print(f"image and labels -> {args.out}/slice.png")
except ImportError:
    print("labels (every second row and column; . background):")
    for y in range(labels.shape[1] - 1, -1, -4):
        print("".join(".12"[v] for v in labels[::2, y]))
