"""Eq. 2 candidate kernels: zero-copy slices for exact transforms, einsum otherwise, and the two agree."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from sharing_lab.aps.layers import APSConv2d, APSLinear, TransformSet, candidate_kernel
from sharing_lab.aps.schemes import get_scheme
from sharing_lab.errors import InputError
from sharing_lab.registry import SCHEMES

OUT_WIDTHS, OUT_META = (2, 3, 5), 10
IN_WIDTHS, IN_META = (1, 2, 4), 7
KERNEL = 3
SAMPLE_ARGUMENTS = {"overlap": "0.5"}  # schemes that need an argument, with one to test
SCHEME_SPECS = [f"{name}:{SAMPLE_ARGUMENTS[name]}" if name in SAMPLE_ARGUMENTS else name for name in SCHEMES.names()]
# the schemes whose starting transforms are exact identity slices on both test sides (the slicing path)
EXACT_SPECS = [spec for spec in SCHEME_SPECS
               if all(get_scheme(spec).make(w, m).offsets is not None for w, m in ((OUT_WIDTHS, OUT_META),
                                                                                   (IN_WIDTHS, IN_META)))]


def _side(spec: str, widths, meta: int, seed: int = 0) -> TransformSet:
    scheme = get_scheme(spec)
    transforms = scheme.make(widths, meta, torch.Generator().manual_seed(seed))
    return TransformSet(widths, transforms, movable=scheme.transition)


def _weight(out_meta=OUT_META, in_meta=IN_META, seed=0, dtype=torch.float32) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(out_meta, in_meta, KERNEL, KERNEL, generator=generator, dtype=dtype)


def _einsum(weight, out_side: TransformSet, o: int, in_side: TransformSet | None, i: int) -> torch.Tensor:
    P = out_side.matrices[o]
    if in_side is None:
        return torch.einsum("mjhw,mx->xjhw", weight, P)
    Q = in_side.matrices[i]
    return torch.einsum("mnhw,mx,ny->xyhw", weight, P, Q)


def _pairs(out_side, in_side):
    in_count = 1 if in_side is None else len(in_side.widths)
    return itertools.product(range(in_count), range(len(out_side.widths)))


def _same_storage(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


def test_ordinal_kernel_is_a_prefix_view_of_the_meta_weight():
    out_side, in_side = _side("ordinal", OUT_WIDTHS, OUT_META), _side("ordinal", IN_WIDTHS, IN_META)
    assert out_side.exact and in_side.exact
    weight = _weight()
    for i, o in _pairs(out_side, in_side):
        kernel = candidate_kernel(weight, out_side, o, in_side, i)
        c_o, c_i = OUT_WIDTHS[o], IN_WIDTHS[i]
        assert kernel.shape == (c_o, c_i, KERNEL, KERNEL)
        assert torch.equal(kernel, weight[:c_o, :c_i])
        assert _same_storage(kernel, weight)
        assert kernel.data_ptr() == weight.data_ptr()  # a prefix starts at the meta-weight's first element
    kernel = candidate_kernel(weight, out_side, 1, in_side, 2)
    weight[0, 0, 0, 0] = 123.0
    weight[1, 3, 2, 1] = -7.0
    assert kernel[0, 0, 0, 0] == 123.0
    assert kernel[1, 3, 2, 1] == -7.0


def test_independent_kernels_are_disjoint_blocks():
    out_side, in_side = _side("independent", OUT_WIDTHS, OUT_META), _side("independent", IN_WIDTHS, IN_META)
    # Unique entries so that sharing between kernels shows up as common values.
    weight = torch.arange(OUT_META * IN_META * KERNEL * KERNEL, dtype=torch.float32)
    weight = weight.reshape(OUT_META, IN_META, KERNEL, KERNEL)
    out_offsets, in_offsets = (0, 2, 5), (0, 1, 3)
    seen: list[set] = []
    for i, o in _pairs(out_side, in_side):
        kernel = candidate_kernel(weight, out_side, o, in_side, i)
        lo, li = out_offsets[o], in_offsets[i]
        assert torch.equal(kernel, weight[lo : lo + OUT_WIDTHS[o], li : li + IN_WIDTHS[i]])
        assert _same_storage(kernel, weight)
        seen.append(set(kernel.flatten().tolist()))
    for a, b in itertools.combinations(seen, 2):
        assert not a & b
    # Ordinal kernels, in contrast, are nested.
    ordinal_out, ordinal_in = _side("ordinal", OUT_WIDTHS, OUT_META), _side("ordinal", IN_WIDTHS, IN_META)
    small = set(candidate_kernel(weight, ordinal_out, 0, ordinal_in, 0).flatten().tolist())
    large = set(candidate_kernel(weight, ordinal_out, 2, ordinal_in, 2).flatten().tolist())
    assert small < large


def test_the_exact_schemes_include_the_paper_baselines():
    assert {"ordinal", "independent", "overlap:0.5"} <= set(EXACT_SPECS)
    assert "transitionary" in SCHEME_SPECS and "transitionary" not in EXACT_SPECS


@pytest.mark.parametrize("spec", EXACT_SPECS)
def test_slicing_equals_einsum(spec):
    out_side, in_side = _side(spec, OUT_WIDTHS, OUT_META), _side(spec, IN_WIDTHS, IN_META)
    assert out_side.exact and in_side.exact
    weight = _weight(seed=1)
    for i, o in _pairs(out_side, in_side):
        sliced = candidate_kernel(weight, out_side, o, in_side, i)
        assert _same_storage(sliced, weight)  # the slicing path was taken
        torch.testing.assert_close(sliced, _einsum(weight, out_side, o, in_side, i), rtol=0, atol=0)


@pytest.mark.parametrize("spec", EXACT_SPECS)
def test_released_transforms_take_the_einsum_path_with_the_same_result(spec):
    out_side, in_side = _side(spec, OUT_WIDTHS, OUT_META), _side(spec, IN_WIDTHS, IN_META)
    weight = _weight(seed=2)
    sliced = {pair: candidate_kernel(weight, out_side, pair[1], in_side, pair[0]).clone() for pair in
              _pairs(out_side, in_side)}
    out_side.release()
    in_side.release()
    assert not out_side.exact and not in_side.exact
    for (i, o), expected in sliced.items():
        kernel = candidate_kernel(weight, out_side, o, in_side, i)
        assert not _same_storage(kernel, weight)
        torch.testing.assert_close(kernel, expected, rtol=0, atol=1e-6)


def test_transitionary_kernel_is_the_einsum():
    out_side, in_side = _side("transitionary", OUT_WIDTHS, OUT_META), _side("transitionary", IN_WIDTHS, IN_META, 1)
    assert not out_side.exact and not in_side.exact
    weight = _weight(seed=3)
    for i, o in _pairs(out_side, in_side):
        kernel = candidate_kernel(weight, out_side, o, in_side, i)
        torch.testing.assert_close(kernel, _einsum(weight, out_side, o, in_side, i))
        # Close to, but not equal to, the ordinal slice.
        prefix = weight[: OUT_WIDTHS[o], : IN_WIDTHS[i]]
        assert not torch.equal(kernel, prefix)
        torch.testing.assert_close(kernel, prefix, rtol=0, atol=0.1)


@pytest.mark.parametrize("out_spec, in_spec", [("ordinal", "transitionary"), ("transitionary", "independent")])
def test_mixed_exact_and_noisy_sides_use_the_einsum(out_spec, in_spec):
    out_side, in_side = _side(out_spec, OUT_WIDTHS, OUT_META), _side(in_spec, IN_WIDTHS, IN_META)
    weight = _weight(seed=4)
    for i, o in _pairs(out_side, in_side):
        kernel = candidate_kernel(weight, out_side, o, in_side, i)
        assert kernel.shape == (OUT_WIDTHS[o], IN_WIDTHS[i], KERNEL, KERNEL)
        torch.testing.assert_close(kernel, _einsum(weight, out_side, o, in_side, i))


@pytest.mark.parametrize("spec", SCHEME_SPECS)
def test_depthwise_kernel(spec):
    out_side = _side(spec, OUT_WIDTHS, OUT_META)
    weight = _weight(OUT_META, 1, seed=5)
    for o in range(len(OUT_WIDTHS)):
        kernel = candidate_kernel(weight, out_side, o, None, 0)
        assert kernel.shape == (OUT_WIDTHS[o], 1, KERNEL, KERNEL)
        torch.testing.assert_close(kernel, _einsum(weight, out_side, o, None, 0))
        if out_side.exact:
            offset = out_side.offsets[o]
            assert torch.equal(kernel, weight[offset : offset + OUT_WIDTHS[o]])
            assert _same_storage(kernel, weight)


def test_linear_classifier_kernel_slices_the_input_side():
    in_side = _side("ordinal", IN_WIDTHS, IN_META)
    classifier = APSLinear(in_side, num_classes=4, generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(1)
    for i, width in enumerate(IN_WIDTHS):
        x = torch.randn(3, width, generator=generator)
        expected = F.linear(x, classifier.weight[:, :width], classifier.bias)
        torch.testing.assert_close(classifier(x, i), expected)
    # Noisy transforms: the classifier mixes the meta-columns with Q^i.
    noisy = APSLinear(_side("transitionary", IN_WIDTHS, IN_META), 4, torch.Generator().manual_seed(0))
    x = torch.randn(3, IN_WIDTHS[1], generator=generator)
    Q = noisy.in_side.matrices[1]
    torch.testing.assert_close(noisy(x, 1), F.linear(x, noisy.weight @ Q, noisy.bias))


@pytest.mark.parametrize("spec", ["ordinal", "transitionary"])
def test_aps_conv_forward_and_no_task_gradient_on_transforms(spec):
    out_side, in_side = _side(spec, OUT_WIDTHS, OUT_META), _side(spec, IN_WIDTHS, IN_META, 1)
    conv = APSConv2d(out_side, in_side, KERNEL, 1, torch.Generator().manual_seed(0))
    assert [name for name, _ in conv.named_parameters()] == ["weight"]  # P/Q are buffers
    buffers = {name for name, _ in conv.named_buffers()}
    assert {"out_side.t0", "out_side.t2", "in_side.t0", "in_side.t2"} <= buffers
    x = torch.randn(4, IN_WIDTHS[2], 6, 6, generator=torch.Generator().manual_seed(1))
    y = conv(x, 2, 1)
    kernel = _einsum(conv.weight.detach(), out_side, 1, in_side, 2)
    expected = F.batch_norm(F.conv2d(x, kernel, padding=1), None, None, training=True)
    torch.testing.assert_close(y, expected, rtol=1e-4, atol=1e-4)
    y.square().sum().backward()
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
    assert all(not t.requires_grad for t in out_side.matrices + in_side.matrices)


def test_aps_conv_rejects_unknown_bn_mode():
    with pytest.raises(InputError, match="unknown BN mode"):
        APSConv2d(_side("ordinal", OUT_WIDTHS, OUT_META), None, 3, 1, bn_mode="shared")
