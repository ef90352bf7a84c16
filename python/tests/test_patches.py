"""crop / stitch: the engine's patch kernels on arrays, checked against numpy indexing."""
import numpy as np
import pytest

import patchwork as pw

AFFINE = np.array([[1.5, 0, 0, -10.0], [0, 2.0, 0, 4.0], [0, 0, 2.5, 1.0], [0, 0, 0, 1]])


def shifted(affine, dx, dy, dz=0):
    t = np.eye(4)
    t[:3, 3] = (dx, dy, dz)
    return affine @ t  # patch voxel v -> image voxel v + d -> world


@pytest.fixture
def image():
    return np.random.default_rng(1).random((9, 8, 7)).astype(np.float32)


@pytest.mark.parametrize("interp", ["nearest", "linear"])
def test_crop_is_indexing_at_whole_voxels(image, interp):
    patches = np.stack([shifted(AFFINE, 2, 3, 1), shifted(AFFINE, 0, 0, 0)])
    out = pw.crop(image, AFFINE, patches, (4, 3, 5), interp=interp)
    assert out.shape == (2, 4, 3, 5) and out.dtype == np.float32
    assert np.array_equal(out[0], image[2:6, 3:6, 1:6])
    assert np.array_equal(out[1], image[0:4, 0:3, 0:5])
    assert out.base is not None  # the engine's tensor, not a copy


def test_crop_linear_half_voxel_and_outside(image):
    out = pw.crop(image, AFFINE, shifted(AFFINE, 0.5, 0, 0)[None], (8, 8, 7), interp="linear", inside_mask=True)
    assert out.shape == (1, 8, 8, 7, 2)
    assert np.allclose(out[0, :, :, :, 0], (image[:-1] + image[1:]) / 2, atol=1e-6)
    assert (out[0, ..., 1] == 1).all()
    far = pw.crop(image, AFFINE, shifted(AFFINE, 100, 0, 0)[None], (2, 2, 2))
    assert (far == 0).all()


def test_crop_channels_and_2d():
    rng = np.random.default_rng(2)
    img4 = rng.random((6, 5, 4, 3)).astype(np.float32)
    out = pw.crop(img4, AFFINE, shifted(AFFINE, 1, 1, 1)[None], (2, 2, 2), interp="nearest")
    assert out.shape == (1, 2, 2, 2, 3) and np.array_equal(out[0], img4[1:3, 1:3, 1:3])
    img2 = rng.random((6, 5)).astype(np.float32)
    out = pw.crop(img2, AFFINE, shifted(AFFINE, 2, 1)[None], (3, 4))
    assert out.shape == (1, 3, 4) and np.array_equal(out[0], img2[2:5, 1:5])


def test_stitch_puts_crops_back(image):
    patches = np.stack([shifted(AFFINE, 0, 0, 0), shifted(AFFINE, 4, 3, 2)])
    crops = pw.crop(image, AFFINE, patches, (5, 5, 5), interp="nearest")
    y = pw.stitch(crops, patches, AFFINE, image.shape, interp="nearest", window="flat")
    assert y.shape == image.shape and y.dtype == np.float32
    covered = np.zeros(image.shape, bool)
    covered[0:5, 0:5, 0:5] = covered[4:9, 3:8, 2:7] = True
    assert np.allclose(y[covered], image[covered], atol=1e-6)
    assert (y[~covered] == 0).all()
    # sparse suppression: Y = sum w p / sqrt((sum w)^2 + 3 alpha); one patch of ones: 1 / sqrt(1 + 3 alpha)
    ones = np.ones((1, 5, 5, 5), np.float32)
    y = pw.stitch(ones, patches[:1], AFFINE, image.shape, sparse_suppression=1.0)
    assert np.allclose(y[0:5, 0:5, 0:5], 0.5)
    y = pw.stitch(np.ones((1, 5, 5, 5, 2), np.float32), patches[:1], AFFINE, image.shape)
    assert y.shape == image.shape + (2,)


def test_bad_input(image):
    p = AFFINE[None]
    with pytest.raises(ValueError, match="image: dtype float64, expected float32"):
        pw.crop(image.astype(np.float64), AFFINE, p, (2, 2, 2))
    with pytest.raises(ValueError, match=r"patches: expected patch affines of shape \(P, 4, 4\)"):
        pw.crop(image, AFFINE, AFFINE, (2, 2, 2))
    with pytest.raises(ValueError, match="size: 2 entries, expected 3"):
        pw.crop(image, AFFINE, p, (2, 2))
    with pytest.raises(ValueError, match="interp 'cubic'"):
        pw.crop(image, AFFINE, p, (2, 2, 2), interp="cubic")
    with pytest.raises(ValueError, match="image: 1 axes"):
        pw.crop(image[0, 0], AFFINE, p, (2, 2, 2))
    with pytest.raises(ValueError, match="patches: 1 affines for 2 patches"):
        pw.stitch(np.zeros((2, 2, 2, 2), np.float32), p, AFFINE, (4, 4, 4))
    with pytest.raises(ValueError, match="window 'hann'"):
        pw.stitch(np.zeros((1, 2, 2, 2), np.float32), p, AFFINE, (4, 4, 4), window="hann")
