"""The torch image transforms behave as torchvision's standard definitions (PIL is the resize reference)."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from sharing_lab.data import image_transforms as T
from sharing_lab.errors import InputError


def _smooth_image(height: int, width: int, seed: int = 0) -> Image.Image:
    """A photo-like RGB image: random colours upsampled smoothly (plus a little noise)."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (max(2, height // 10), max(2, width // 10), 3), dtype=np.uint8))
    pixels = np.asarray(coarse.resize((width, height), Image.BICUBIC)).astype(np.int16)
    pixels = pixels + rng.integers(-8, 9, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)


def test_decode_reads_rgb_uint8(tmp_path):
    image = _smooth_image(30, 45)
    image.save(tmp_path / "a.png")
    image.convert("L").save(tmp_path / "grey.png")
    x = T.decode(tmp_path / "a.png")
    assert x.dtype == torch.uint8 and x.shape == (3, 30, 45)
    assert torch.equal(x, _tensor(image))
    grey = T.decode(str(tmp_path / "grey.png"))
    assert grey.shape == (3, 30, 45) and torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"\xff\xd8\xff\xe0" + b"\x00" * 40])
def test_decode_bad_file_is_one_line_input_error(tmp_path, content):
    path = tmp_path / "broken.jpg"
    path.write_bytes(content)
    with pytest.raises(InputError, match="broken.jpg: not a readable image") as error:
        T.decode(path)
    assert "\n" not in str(error.value)
    with pytest.raises(InputError, match="missing.jpg"):
        T.decode(tmp_path / "missing.jpg")


def test_truncated_jpeg_is_input_error(tmp_path):
    _smooth_image(80, 90).save(tmp_path / "full.jpg", quality=90)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cut.jpg"):
        T.decode(tmp_path / "cut.jpg")


@pytest.mark.parametrize("height,width", [(375, 500), (500, 375), (64, 64), (7, 300), (1, 1)])
def test_random_resized_crop_params_inside_image_with_area_and_ratio_in_range(height, width):
    generator = torch.Generator().manual_seed(1)
    scale, ratio = (0.08, 1.0), (3 / 4, 4 / 3)
    for _ in range(200):
        top, left, h, w = T.random_resized_crop_params(height, width, generator, scale, ratio)
        assert 0 <= top and 0 <= left and 0 < h and 0 < w
        assert top + h <= height and left + w <= width
        fallback = (top, left, h, w) == _central_fallback(height, width, ratio)
        if not fallback:  # a sampled box: its area and ratio are in range, up to the rounding of h and w
            area = h * w / (height * width)
            assert scale[0] - 0.02 <= area <= scale[1] + 1e-9 or h * w <= 4
            assert math.log(ratio[0]) - 0.2 <= math.log(w / h) <= math.log(ratio[1]) + 0.2 or h * w <= 4


def _central_fallback(height, width, ratio):
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        w, h = int(round(height * max(ratio))), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def test_random_resized_crop_params_sampled_box_statistics():
    generator = torch.Generator().manual_seed(0)
    boxes = [T.random_resized_crop_params(375, 500, generator) for _ in range(2000)]
    areas = np.array([h * w / (375 * 500) for _, _, h, w in boxes])
    ratios = np.array([w / h for _, _, h, w in boxes])
    assert areas.min() >= 0.075 and areas.max() <= 1.0 and 0.35 < areas.mean() < 0.6
    assert ratios.min() >= 0.74 and ratios.max() <= 1.35
    square = [T.random_resized_crop_params(400, 400, generator) for _ in range(2000)]
    log_ratios = np.log([w / h for _, _, h, w in square])  # log-uniform about 1 where tall and wide fit alike
    assert np.mean(log_ratios) == pytest.approx(0.0, abs=0.03) and np.std(log_ratios) > 0.12
    tops = {t for t, _, _, _ in boxes}
    assert len(tops) > 100  # placed at random, not centred


def test_random_resized_crop_params_fallback_is_the_central_crop():
    generator = torch.Generator().manual_seed(0)
    # no box of 2..3 times the image's area fits: the whole image, clamped to the ratio range, centred
    assert T.random_resized_crop_params(300, 400, generator, scale=(2.0, 3.0)) == (0, 0, 300, 400)
    assert T.random_resized_crop_params(100, 400, generator, scale=(2.0, 3.0)) == (0, 133, 100, 133)
    assert T.random_resized_crop_params(400, 100, generator, scale=(2.0, 3.0)) == (133, 0, 133, 100)
    # a very elongated image: every sampled box of (almost) the whole area is too tall
    assert T.random_resized_crop_params(10, 200, generator, scale=(0.99, 1.0)) == (0, 93, 10, 13)


def test_random_resized_crop_params_use_the_generator_only():
    draws = [T.random_resized_crop_params(375, 500, torch.Generator().manual_seed(5)) for _ in range(2)]
    assert draws[0] == draws[1]
    torch.manual_seed(0)
    before = torch.get_rng_state()
    T.random_resized_crop_params(375, 500, torch.Generator().manual_seed(5))
    assert torch.equal(before, torch.get_rng_state())


@pytest.mark.parametrize("height,width,size,expected", [(375, 500, 256, (256, 341)), (500, 375, 224, (298, 224)),
                                                        (64, 64, 36, (36, 36)), (41, 70, 36, (36, 61))])
def test_resize_keeps_aspect_and_shorter_side(height, width, size, expected):
    x = torch.randint(0, 256, (3, height, width), dtype=torch.uint8)
    out = T.resize(x, size)
    assert out.dtype == torch.uint8 and tuple(out.shape) == (3, *expected)
    assert min(out.shape[1:]) == size
    assert abs(out.shape[1] / out.shape[2] - height / width) < 2 / size
    batched = T.resize(T.to_float(x).unsqueeze(0).repeat(2, 1, 1, 1), size)
    assert batched.dtype == torch.float32 and tuple(batched.shape) == (2, 3, *expected)


def test_resize_to_same_size_is_identity():
    x = torch.randint(0, 256, (3, 36, 50), dtype=torch.uint8)
    assert torch.equal(T.resize(x, 36), x)


@pytest.mark.parametrize("size", [24, 37, 64, 100, 256])  # down- and upsampling
def test_resize_matches_pil_bilinear(size):
    image = _smooth_image(120, 160, seed=size)
    out = T.resize(_tensor(image), size)
    h, w = out.shape[1:]
    reference = np.asarray(image.resize((w, h), Image.BILINEAR)).astype(np.float64)
    diff = np.abs(out.permute(1, 2, 0).numpy().astype(np.float64) - reference)
    assert diff.mean() < 2 and diff.max() <= 8  # on the 0..255 scale: under 2/255 on average
    assert diff.mean() < 0.05 and diff.max() <= 1  # in fact torch's uint8 kernel is PIL's arithmetic
    as_float = T.resize(T.to_float(_tensor(image)), size)  # float in, float out: the same within rounding
    assert (as_float * 255 - out.float()).abs().max() <= 1 + 1e-3
    float_diff = np.abs(as_float.permute(1, 2, 0).numpy() * 255 - reference)
    assert float_diff.mean() < 2 and float_diff.max() <= 8


def test_resize_of_uint8_off_the_cpu_path_rounds_the_float_resize():
    x = _tensor(_smooth_image(50, 70))
    rounded = T._interpolate(x.to(torch.int16), (30, 42))  # an integer dtype without a kernel of its own
    assert rounded.dtype == torch.int16
    expected = torch.nn.functional.interpolate(x.unsqueeze(0).float(), size=(30, 42), mode="bilinear",
                                               antialias=True, align_corners=False)[0].round()
    assert torch.equal(rounded.float(), expected)
    assert (rounded.float() - T.resize(x, 30).float()).abs().max() <= 1


def test_center_crop_takes_the_center():
    x = torch.arange(3 * 9 * 12).reshape(3, 9, 12)
    assert torch.equal(T.center_crop(x, 4), x[:, 2:6, 4:8])
    assert torch.equal(T.center_crop(x, (5, 6)), x[:, 2:7, 3:9])
    assert torch.equal(T.center_crop(x, (9, 12)), x)
    # odd margins round like torchvision: round((9 - 6) / 2) = 2, round((12 - 7) / 2) = 2 (to even)
    assert torch.equal(T.center_crop(x, (6, 7)), x[:, 2:8, 2:9])
    batch = torch.stack([x, x + 1])
    assert torch.equal(T.center_crop(batch, 4), batch[..., 2:6, 4:8])


def test_center_crop_pads_a_small_image_with_zeros():
    x = torch.ones(3, 4, 6)
    out = T.center_crop(x, 8)
    assert out.shape == (3, 8, 8)
    assert out.sum() == x.sum()
    assert torch.equal(out[:, 2:6, 1:7], x)


def test_hflip_mirrors_and_twice_is_identity():
    x = torch.randint(0, 256, (3, 5, 7), dtype=torch.uint8)
    assert torch.equal(T.hflip(x)[..., 0], x[..., -1])
    assert torch.equal(T.hflip(T.hflip(x)), x)


def test_to_float_and_normalize():
    x = torch.tensor([0, 51, 255], dtype=torch.uint8).view(3, 1, 1).expand(3, 2, 2)
    f = T.to_float(x)
    assert f.dtype == torch.float32 and torch.allclose(f[:, 0, 0], torch.tensor([0.0, 0.2, 1.0]))
    z = T.normalize(f, (0.0, 0.2, 0.5), (1.0, 0.1, 0.25))
    assert torch.allclose(z[:, 1, 1], torch.tensor([0.0, 0.0, 2.0]))
    assert torch.equal(f, T.to_float(x))  # normalize does not write into its input
    with pytest.raises(TypeError):
        T.normalize(x, (0.0,) * 3, (1.0,) * 3)
    with pytest.raises(ValueError):
        T.normalize(f, (0.0,) * 2, (1.0,) * 2)


def _reference_eval(image: Image.Image, size: int) -> torch.Tensor:
    """Resize + CenterCrop + ToTensor + Normalize written with PIL, as torchvision applies them to PIL images."""
    w, h = image.size
    resize_to = size * 256 // 224
    new_h, new_w = T.resized_shape(h, w, resize_to)
    resized = image.resize((new_w, new_h), Image.BILINEAR)
    top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
    cropped = resized.crop((left, top, left + size, top + size))
    x = torch.from_numpy(np.array(cropped)).permute(2, 0, 1).float() / 255
    mean, std = torch.tensor(T.IMAGENET_MEAN).view(3, 1, 1), torch.tensor(T.IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std


@pytest.mark.parametrize("height,width,size", [(375, 500, 224), (70, 41, 32), (500, 375, 64)])
def test_eval_transform_shape_and_normalisation(height, width, size):
    image = _smooth_image(height, width, seed=height)
    out = T.eval_transform(_tensor(image), size)
    assert out.dtype == torch.float32 and out.shape == (3, size, size) and out.is_contiguous()
    reference = _reference_eval(image, size)
    std = torch.tensor(T.IMAGENET_STD).view(3, 1, 1)
    assert ((out - reference).abs() * std).mean() < 2 / 255  # back on the 0..1 scale
    assert ((out - reference).abs() * std).max() <= 1 / 255 + 1e-6
    flat = torch.full((3, height, width), 128, dtype=torch.uint8)
    expected = (128 / 255 - torch.tensor(T.IMAGENET_MEAN)) / torch.tensor(T.IMAGENET_STD)
    assert torch.allclose(T.eval_transform(flat, size), expected.view(3, 1, 1).expand(3, size, size), atol=1e-5)


def test_train_transform_is_the_random_resized_crop_then_flip():
    image = _tensor(_smooth_image(60, 80))
    out = T.train_transform(image, 32, torch.Generator().manual_seed(3))
    assert out.dtype == torch.float32 and out.shape == (3, 32, 32) and out.is_contiguous()
    generator = torch.Generator().manual_seed(3)  # the same draws, by hand
    top, left, h, w = T.random_resized_crop_params(60, 80, generator)
    crop = image[:, top:top + h, left:left + w]
    pil = Image.fromarray(crop.permute(1, 2, 0).numpy()).resize((32, 32), Image.BILINEAR)  # torchvision on PIL
    manual = T.to_float(_tensor(pil))
    if torch.rand(1, generator=generator).item() < 0.5:
        manual = manual.flip(-1)
    expected = T.normalize(manual, T.IMAGENET_MEAN, T.IMAGENET_STD)
    std = torch.tensor(T.IMAGENET_STD).view(3, 1, 1)
    assert ((out - expected).abs() * std).max() <= 1 / 255 + 1e-6  # at most one level on a few pixels
    assert ((out - expected).abs() * std).mean() < 0.05 / 255


def test_train_transform_is_deterministic_given_the_seed_and_flips_half_the_time():
    image = _tensor(_smooth_image(50, 50))
    a = T.train_transform(image, 24, torch.Generator().manual_seed(11))
    b = T.train_transform(image, 24, torch.Generator().manual_seed(11))
    assert torch.equal(a, b)
    outs = [T.train_transform(image, 24, torch.Generator().manual_seed(s)) for s in range(40)]
    assert len({o.sum().item() for o in outs}) > 30
    flips = 0
    for seed in range(400):
        generator = torch.Generator().manual_seed(seed)
        T.random_resized_crop_params(50, 50, generator)
        flips += torch.rand(1, generator=generator).item() < 0.5
    assert 150 < flips < 250


def test_transforms_want_uint8_images():
    with pytest.raises(TypeError):
        T.train_transform(torch.zeros(3, 8, 8), 4, None)
    with pytest.raises(TypeError):
        T.eval_transform(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), 4)
