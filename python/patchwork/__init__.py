"""Patchwork from Python: read and write NIfTI, apply and train Deep Neural Patchworks, crop and stitch patches.

Arrays are numpy arrays in NIfTI index order (x, y, z[, channels]) with a 4x4 voxel-to-world affine, as
nibabel gives them. Every function calls the C++ code the ``patchwork`` command line calls; errors carry the
command line's one-line messages (ValueError for bad input, OSError for files that cannot be read or written).
"""
import difflib
import json
import os

import numpy as np

from . import _patchwork

__all__ = ["read_nifti", "write_nifti", "Model", "train", "crop", "stitch", "phantom", "cuda_available"]

cuda_available = _patchwork.cuda_available


def read_nifti(path):
    """Reads a .nii, .nii.gz, .hdr/.img: returns (array, affine, header dict).

    The array has the image's dims (x, y, z, ...) and its stored dtype, without a copy of the data read; scaled
    data (scl_slope) come as float64 values. The header dict is what ``patchwork info --json`` prints.
    """
    return _patchwork.read_nifti(os.fspath(path))


def write_nifti(path, array, affine, header=None):
    """Writes `array` (x, y, z, ..., any of the ten NIfTI scalar dtypes) to a .nii or .nii.gz atomically, with
    `affine` as sform and qform. `header` may carry descrip, aux_file, intent_code, intent_name, xyzt_units,
    qform_code, sform_code; the other keys of a read_nifti header dict are derived from the array and ignored.
    """
    derived = {"nifti_version", "dims", "datatype", "datatype_name", "bitpix", "pixdim", "qfac", "scl_slope",
               "scl_inter", "scaled", "affine", "affine_source", "vox_offset", "byte_order", "extensions"}
    fields = {k: v for k, v in (header or {}).items() if k not in derived}
    _patchwork.write_nifti(os.fspath(path), np.asarray(array), np.asarray(affine, dtype=np.float64), fields)


def _apply_options(options):
    o = _patchwork.ApplyOptions()
    names = [n for n in dir(o) if not n.startswith("_")]
    for key, value in options.items():
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise TypeError(f"apply: unknown option '{key}'{hint}")
        if key == "label_names" and isinstance(value, str):
            value = value.split(",")
        if key == "augment" and isinstance(value, dict):
            value = json.dumps(value)
        setattr(o, key, value)
    return o


class Model:
    """A trained patchwork model (a .safetensors file written by ``patchwork train`` or train())."""

    def __init__(self, handle, path):
        self._m = handle
        self.path = path

    @classmethod
    def load(cls, path, device=None):
        """Loads a model file; device 'cpu' or 'cuda' (default: cuda when available)."""
        return cls(_patchwork.Model.load(os.fspath(path), device or ""), os.fspath(path))

    def info(self):
        """The scheme (crop_generator), ndim, image_channels, label values, names and thresholds, training summary."""
        return self._m.info()

    def apply(self, image, affine, threads=0, return_affine=False, **options):
        """Segments one case: `image` is an array (x, y[, z]) or a list of them (the contrasts), on the grid
        of `affine`. Options are those of ``patchwork apply`` with '_' for '-' (out_type='atls',
        generate_type='tree', num_patches, branch_factor, num_chunks, lazy_fraction, attention, attention_fun,
        window, sparse_suppression, ce_threshold, label_names, label_colors, largest_component, connectivity,
        sampling_factor, level, scale_to_original, augment, seed, batch_size, quiet; lazy_fraction, attention
        and attention_fun default to the model's lazyEval); `threads` as --threads. Returns the output array (as the file the command
        writes would hold it: labels, masks or probabilities with a last axis per label), and with
        return_affine=True also its affine (it differs from `affine` with scale_to_original=False or a
        sampling_factor).
        """
        images = list(image) if isinstance(image, (list, tuple)) else [image]
        images = [np.asarray(a) for a in images]
        out, out_affine = self._m.apply(images, np.asarray(affine, dtype=np.float64), _apply_options(options),
                                        threads)
        return (out, out_affine) if return_affine else out


def train(config, dataset=None, out="model.safetensors", callback=None, device=None, threads=0, seed=None,
          resume=False, quiet=False):
    """Trains a model as ``patchwork train`` does and writes `out` (+ .ckpt, .log.jsonl, .curves.png).

    `config` is a dict (the JSON config; relative dataset paths count from the working folder) or a path to
    a JSON file. After each iteration `callback(record)` gets that iteration's line of the training log as a
    dict (it, loss per level, val_dice when validated, time_s, lr, ...); returning False ends the training
    there (the final validation runs and the model is written, as when time_limit_s runs out). Ctrl-C stops
    it too (KeyboardInterrupt; the model file is then not written). Returns a dict: iterations, seconds,
    last_loss, validation_dice, thresholds, model, curves.
    """
    if isinstance(config, dict):
        text, is_path = json.dumps(config), False
    else:
        text, is_path = os.fspath(config), True

    def on_line(line):
        if callback is None:
            return True
        return callback(json.loads(line)) is not False

    return _patchwork.train(text, is_path, "" if dataset is None else os.fspath(dataset), os.fspath(out), on_line,
                            device or "", threads, -1 if seed is None else seed, resume, quiet)


def _ndim(image):
    a = np.asarray(image)
    if a.ndim not in (2, 3, 4):
        raise ValueError(f"image: {a.ndim} axes, expected (x, y), (x, y, z) or (x, y, z, channels)")
    return a, (2 if a.ndim == 2 else 3)


def crop(image, affine, patches, size, interp="linear", inside_mask=False):
    """Crops patches from a float32 image (x, y), (x, y, z) or (x, y, z, channels) on the grid of `affine`:
    `patches` are the patches' voxel-to-world affines (P, 4, 4), `size` their voxel counts (x, y[, z]),
    interp 'nearest' or 'linear' (the engine's gather kernel; 0 outside the image). Returns (P, x, y[, z]) or,
    with channels (or inside_mask: a last channel that is 1 where the sample lies inside the image),
    (P, x, y[, z], C).
    """
    a, ndim = _ndim(image)
    return _patchwork.crop(a, ndim, np.asarray(affine, dtype=np.float64), np.asarray(patches, dtype=np.float64),
                           [int(s) for s in size], interp, inside_mask)


def stitch(data, patches, affine, shape, interp="nearest", window="flat", sparse_suppression=0.0):
    """Stitches float32 patches `data` (P, x, y[, z][, C]) placed by their affines `patches` (P, 4, 4) into an
    array of `shape` (x, y[, z]) on the grid of `affine`: Y = sum w p / sqrt((sum w)^2 + 3 alpha) with the
    window w ('flat', 'cos', 'cos2') and alpha = sparse_suppression (0: the weighted mean; 0 where no patch
    lands). Returns (x, y[, z]) or (x, y[, z], C).
    """
    shape = [int(s) for s in shape]
    if len(shape) not in (2, 3):
        raise ValueError(f"shape: {len(shape)} entries, expected (x, y) or (x, y, z)")
    return _patchwork.stitch(np.asarray(data), len(shape), np.asarray(patches, dtype=np.float64),
                             np.asarray(affine, dtype=np.float64), shape, interp, window, float(sparse_suppression))


def phantom(dims=(48, 48, 40), spacing=(1.5, 1.5, 2.0), num_labels=3, noise=0.08, bias=0.25, seed=1):
    """The synthetic phantom of ``patchwork demo``: (image float32, labels uint8 0..num_labels, affine); a 2D
    phantom (dims z = 1) has arrays of shape (x, y)."""
    return _patchwork.phantom([int(d) for d in dims], [float(s) for s in spacing], num_labels, noise, bias, seed)
