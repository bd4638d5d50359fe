"""Sharing schemes, the sharing level Φ (Eq. 4) and its projected-gradient transition (Eq. 5)."""

from __future__ import annotations

import itertools

import pytest
import torch

import sharing_lab
from sharing_lab.aps import schemes, sharing
from sharing_lab.aps.schemes import SharingScheme, Transforms, get_scheme
from sharing_lab.aps.sharing import phi, phi_code, random_semi_orthogonal, transition_step
from sharing_lab.errors import InputError
from sharing_lab.registry import SCHEMES, register_scheme

WIDTHS = (4, 8, 12, 16)
META = 40  # Σ widths: every built-in scheme fits


def _random_transforms(meta: int, widths, generator, dtype=torch.float64) -> list[torch.Tensor]:
    """Dense Gaussian transforms: neither orthogonal nor unit-norm, so nothing special holds."""
    return [torch.randn(meta, w, generator=generator, dtype=dtype) for w in widths]


def _brute_force_phi(P, Q) -> torch.Tensor:
    """Eq. 4 as written: Σ_{i≤ĩ} Σ_{o≤õ} ‖Q^{iᵀ}Q^{ĩ}‖²_F ‖P^{oᵀ}P^{õ}‖²_F, one term per candidate pair."""
    total = torch.zeros((), dtype=P[0].dtype)
    for i, i2 in itertools.combinations_with_replacement(range(len(Q)), 2):
        for o, o2 in itertools.combinations_with_replacement(range(len(P)), 2):
            q_term = (Q[i].T @ Q[i2]).square().sum()
            p_term = (P[o].T @ P[o2]).square().sum()
            total = total + q_term * p_term
    return total


def _identity_slice(meta: int, offset: int, width: int) -> torch.Tensor:
    return torch.eye(meta)[:, offset : offset + width]


# --- Φ (Eq. 4) --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "out_widths, out_meta, in_widths, in_meta",
    [((2, 3, 5), 9, (1, 4), 6), ((4, 8, 12, 16), 40, (4, 8, 12, 16), 40), ((3,), 5, (2, 3, 4), 7)],
)
def test_phi_matches_brute_force_double_loop(out_widths, out_meta, in_widths, in_meta):
    generator = torch.Generator().manual_seed(1)
    P = _random_transforms(out_meta, out_widths, generator)
    Q = _random_transforms(in_meta, in_widths, generator)
    expected = _brute_force_phi(P, Q)
    got = phi(P, Q)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=0)


def test_phi_is_exported_at_package_level():
    assert sharing_lab.phi is phi


def test_phi_gradcheck():
    generator = torch.Generator().manual_seed(3)
    P = [t.requires_grad_() for t in _random_transforms(5, (2, 3), generator)]
    Q = [t.requires_grad_() for t in _random_transforms(4, (1, 2, 3), generator)]

    def fn(*tensors):
        return phi(tensors[: len(P)], tensors[len(P) :])

    assert torch.autograd.gradcheck(fn, (*P, *Q), eps=1e-6, atol=1e-5, rtol=1e-4)


def test_phi_gradient_matches_brute_force_gradient():
    generator = torch.Generator().manual_seed(4)
    P = [t.requires_grad_() for t in _random_transforms(6, (2, 4), generator)]
    Q = [t.requires_grad_() for t in _random_transforms(5, (1, 3), generator)]
    grads = torch.autograd.grad(phi(P, Q), P + Q)
    expected = torch.autograd.grad(_brute_force_phi(P, Q), P + Q)
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_phi_closed_forms_for_ordinal_and_independent():
    # Ordinal (nested identity slices): ‖T^{aᵀ}T^b‖² = min(c_a, c_b); independent: only the a = b terms, = c_a.
    ordinal = get_scheme("ordinal").make(WIDTHS, META).matrices
    independent = get_scheme("independent").make(WIDTHS, META).matrices
    ordinal_side = sum(min(a, b) for a, b in itertools.combinations_with_replacement(WIDTHS, 2))
    independent_side = sum(WIDTHS)
    assert float(phi(ordinal, ordinal)) == pytest.approx(ordinal_side**2)
    assert float(phi(independent, independent)) == pytest.approx(independent_side**2)
    assert float(phi(ordinal, independent)) == pytest.approx(ordinal_side * independent_side)


def test_phi_of_random_semi_orthogonal_lies_between_independent_and_ordinal():
    # Theorem 3.1 (b): ordinal attains the maximum and independent the minimum over semi-orthogonal transforms.
    generator = torch.Generator().manual_seed(5)
    ordinal = [t.double() for t in get_scheme("ordinal").make(WIDTHS, META).matrices]
    independent = [t.double() for t in get_scheme("independent").make(WIDTHS, META).matrices]
    low, high = float(phi(independent, independent)), float(phi(ordinal, ordinal))
    for _ in range(5):
        P = [random_semi_orthogonal(META, w, generator) for w in WIDTHS]
        Q = [random_semi_orthogonal(META, w, generator) for w in WIDTHS]
        value = float(phi(P, Q))
        assert low - 1e-6 <= value <= high + 1e-6
        assert low + 1 < value < high - 1  # random transforms are strictly in between


# --- schemes ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, offsets",
    [
        ("ordinal", (0, 0, 0, 0)),
        ("independent", (0, 4, 12, 24)),
        ("overlap:0.5", (0, 2, 6, 12)),
        ("overlap:1", (0, 0, 0, 0)),
        ("overlap:0", (0, 4, 12, 24)),
        ("overlap:0.25", (0, 3, 9, 18)),
        ("overlap:0.3", (0, 2, 7, 15)),  # floor((1 - α) c_j): 2.8 → 2, 5.6 → 5, 8.4 → 8
    ],
)
def test_exact_schemes_give_identity_slices_at_offsets(spec, offsets):
    scheme = get_scheme(spec)
    assert not scheme.transition
    transforms = scheme.make(WIDTHS, META)
    assert isinstance(transforms, Transforms)
    assert transforms.offsets == offsets
    assert len(transforms.matrices) == len(WIDTHS)
    for matrix, offset, width in zip(transforms.matrices, offsets, WIDTHS):
        assert matrix.shape == (META, width)
        assert torch.equal(matrix, _identity_slice(META, offset, width))
        torch.testing.assert_close(matrix.norm(dim=0), torch.ones(width))


def test_overlap_name_and_required_meta_width():
    assert get_scheme("overlap:0.5").name == "overlap:0.5"
    assert get_scheme("overlap:0.5").required_meta_width(WIDTHS) == 12 + 16
    assert get_scheme("independent").required_meta_width(WIDTHS) == sum(WIDTHS)
    assert get_scheme("ordinal").required_meta_width(WIDTHS) == max(WIDTHS)


def test_transitionary_is_a_noisy_unit_norm_ordinal_start():
    scheme = get_scheme("transitionary")
    assert scheme.transition
    assert scheme.sigma == pytest.approx(schemes.DEFAULT_SIGMA)
    transforms = scheme.make(WIDTHS, META, torch.Generator().manual_seed(0))
    assert transforms.offsets is None  # noise was added: no zero-copy slicing
    for matrix, width in zip(transforms.matrices, WIDTHS):
        torch.testing.assert_close(matrix.norm(dim=0), torch.ones(width), rtol=0, atol=1e-6)
        exact = _identity_slice(META, 0, width)
        assert not torch.equal(matrix, exact)
        assert (matrix - exact).abs().max() < 20 * schemes.DEFAULT_SIGMA


def test_transitionary_noise_is_seeded_and_sigma_is_parsed():
    scheme = get_scheme("transitionary")
    a = scheme.make(WIDTHS, META, torch.Generator().manual_seed(7)).matrices
    b = scheme.make(WIDTHS, META, torch.Generator().manual_seed(7)).matrices
    c = scheme.make(WIDTHS, META, torch.Generator().manual_seed(8)).matrices
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))
    loud = get_scheme("transitionary:0.05")
    assert loud.sigma == pytest.approx(0.05)
    noisy = loud.make(WIDTHS, META, torch.Generator().manual_seed(7)).matrices
    quiet_gap = (a[-1] - _identity_slice(META, 0, 16)).abs().max()
    loud_gap = (noisy[-1] - _identity_slice(META, 0, 16)).abs().max()
    assert loud_gap > 5 * quiet_gap


def _spec(name: str) -> str:
    """A registered scheme name as a spec (``overlap`` needs its α)."""
    return "overlap:0.5" if name == "overlap" else name


@pytest.mark.parametrize("name", SCHEMES.names())
def test_offsets_none_exactly_when_noise_is_added(name):
    scheme = get_scheme(_spec(name))
    transforms = scheme.make(WIDTHS, META, torch.Generator().manual_seed(0))
    assert (transforms.offsets is None) == (scheme.sigma > 0)


def test_a_noisy_exact_scheme_has_no_offsets():
    noisy_independent = SharingScheme("noisy-independent", overlap=0.0, sigma=1e-3)
    assert noisy_independent.make(WIDTHS, META).offsets is None


@pytest.mark.parametrize(
    "spec",
    [
        "nope",
        "Ordinal",
        "",
        "overlap",
        "overlap:",
        "overlap:1.5",
        "overlap:-0.1",
        "overlap:abc",
        "overlap:nan",
        "ordinal:1",
        "independent:0",
        "transitionary:0",
        "transitionary:-1e-3",
        "transitionary:abc",
    ],
)
def test_bad_scheme_specs_raise_input_error(spec):
    with pytest.raises(InputError):
        get_scheme(spec)


def test_independent_needs_meta_at_least_the_sum_of_widths():
    scheme = get_scheme("independent")
    with pytest.raises(InputError):
        scheme.make(WIDTHS, META - 1)
    assert scheme.make(WIDTHS, META).offsets == (0, 4, 12, 24)
    with pytest.raises(InputError):
        get_scheme("ordinal").make(WIDTHS, max(WIDTHS) - 1)


def test_registered_scheme_is_found_by_get_scheme():
    name = "test-quarter-overlap"
    seen_arguments = []

    @register_scheme(name)
    def _factory(argument):
        seen_arguments.append(argument)
        return SharingScheme(name, overlap=0.75 if argument is None else float(argument))

    assert sharing_lab.register_scheme is register_scheme
    try:
        assert name in schemes.scheme_names()
        scheme = get_scheme(name)
        assert scheme.name == name
        assert scheme.make(WIDTHS, META).offsets == (0, 1, 3, 6)
        assert get_scheme(f"{name}:0").make(WIDTHS, META).offsets == (0, 4, 12, 24)
        assert seen_arguments == [None, "0"]
    finally:
        SCHEMES._items.pop(name, None)  # unregister
    with pytest.raises(InputError):
        get_scheme(name)


def test_registered_subclass_scheme_with_custom_make():
    """A user scheme that overrides ``make`` (random orthogonal transforms) works through get_scheme."""
    name = "test-random-orthogonal"

    class RandomOrthogonal(SharingScheme):
        def make(self, widths, meta_width, generator=None):
            matrices = tuple(random_semi_orthogonal(meta_width, w, generator).float() for w in widths)
            return Transforms(matrices, None)

    register_scheme(name)(lambda argument: RandomOrthogonal(name, overlap=1.0, transition=True))
    try:
        transforms = get_scheme(name).make(WIDTHS, META, torch.Generator().manual_seed(0))
        assert transforms.offsets is None
        for matrix, width in zip(transforms.matrices, WIDTHS):
            torch.testing.assert_close(matrix.T @ matrix, torch.eye(width), rtol=0, atol=1e-5)
    finally:
        SCHEMES._items.pop(name, None)  # unregister


# --- transition (Eq. 5) -----------------------------------------------------------------------------------


def _transitionary_pair(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    scheme = get_scheme("transitionary")
    P = list(scheme.make(WIDTHS, META, generator).matrices)
    Q = list(scheme.make(WIDTHS, META, generator).matrices)
    return P, Q


def test_transition_step_lowers_phi_and_keeps_unit_columns():
    P, Q = _transitionary_pair()
    start = float(phi(P, Q))
    values = []
    for _ in range(10):
        before = transition_step(P, Q, tau=5e-4)
        values.append(before)
        for matrix in P + Q:
            torch.testing.assert_close(matrix.norm(dim=0), torch.ones(matrix.shape[1]), rtol=0, atol=1e-5)
    end = float(phi(P, Q))
    assert values[0] == pytest.approx(start)  # returns Φ before the step
    values.append(end)
    assert all(b < a for a, b in zip(values, values[1:])), values
    assert end < 0.95 * start


def test_side_level_grad_matches_autograd():
    if not hasattr(sharing, "side_level_grad"):
        pytest.skip("no closed-form side-level gradient in this version")
    generator = torch.Generator().manual_seed(6)
    transforms = [t.requires_grad_() for t in _random_transforms(7, (2, 3, 4), generator)]
    expected = torch.autograd.grad(sharing.side_level(transforms), transforms)
    got = sharing.side_level_grad([t.detach() for t in transforms])
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-10)


def test_transition_step_updates_in_place_along_the_projected_gradient():
    # One step by hand: t ← Π_U(t − τ ∇_t Φ) column-wise.
    P, Q = _transitionary_pair(seed=1)
    leaves = [t.clone().requires_grad_() for t in P + Q]
    grads = torch.autograd.grad(phi(leaves[: len(P)], leaves[len(P) :]), leaves)
    tau = 1e-4
    expected = [t.detach() - tau * g for t, g in zip(leaves, grads)]
    expected = [e / e.norm(dim=0, keepdim=True) for e in expected]
    transition_step(P, Q, tau)
    for got, want in zip(P + Q, expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("hold", ["P", "Q"])
def test_transition_step_holds_a_side_when_its_flag_is_false(hold):
    P, Q = _transitionary_pair(seed=2)
    P0, Q0 = [p.clone() for p in P], [q.clone() for q in Q]
    for _ in range(3):
        transition_step(P, Q, tau=5e-4, update_P=hold != "P", update_Q=hold != "Q")
    held, moved = (P, Q) if hold == "P" else (Q, P)
    held0, moved0 = (P0, Q0) if hold == "P" else (Q0, P0)
    assert all(torch.equal(a, b) for a, b in zip(held, held0))
    assert not all(torch.allclose(a, b) for a, b in zip(moved, moved0))


def test_transition_step_with_both_sides_held_changes_nothing():
    P, Q = _transitionary_pair(seed=3)
    P0, Q0 = [p.clone() for p in P], [q.clone() for q in Q]
    value = transition_step(P, Q, tau=1e-3, update_P=False, update_Q=False)
    assert value == pytest.approx(float(phi(P0, Q0)))
    assert all(torch.equal(a, b) for a, b in zip(P + Q, P0 + Q0))


def test_exact_ordinal_start_does_not_move():
    # The reason for init noise: at an exact ordinal start the Φ gradient is parallel to every column.
    P = list(get_scheme("ordinal").make(WIDTHS, META).matrices)
    Q = list(get_scheme("ordinal").make(WIDTHS, META).matrices)
    P0 = [p.clone() for p in P]
    for _ in range(3):
        transition_step(P, Q, tau=1e-5)
    for got, want in zip(P, P0):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


# --- the authors' code's sharing level --------------------------------------------------------------------


def test_phi_code_zero_for_independent_positive_for_ordinal():
    independent = get_scheme("independent").make(WIDTHS, META).matrices
    ordinal = get_scheme("ordinal").make(WIDTHS, META).matrices
    assert float(phi_code(independent, independent)) == 0.0
    # Ordinal: off-diagonal Gram entries equal to 1 are the shared columns of distinct candidates,
    # Σ_{a≠b} min(c_a, c_b) per side.
    per_side = sum(min(a, b) for a, b in itertools.permutations(WIDTHS, 2))
    assert float(phi_code(ordinal, ordinal)) == pytest.approx(2 * per_side)
    assert float(phi_code(ordinal, independent)) == pytest.approx(per_side)
    overlap = get_scheme("overlap:0.5").make(WIDTHS, META).matrices
    assert 0 < float(phi_code(overlap, overlap)) < 2 * per_side
