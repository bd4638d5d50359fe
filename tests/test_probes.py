"""The probes (DESIGN §2: Eq. 3 gradient alignment, Eq. 4 sharing level, the coupled gradient of Section 3.3;
DESIGN §5: the ``layers``/``pairs`` records), checked against computations written out here, and the promise
that probes never change the search they watch."""

from __future__ import annotations

import copy
import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F

import sharing_lab
from sharing_lab.aps.layers import APSConv2d, TransformSet, candidate_kernel
from sharing_lab.aps.schemes import Transforms, get_scheme
from sharing_lab.aps.sharing import pair_level
from sharing_lab.config import Config, apply_overrides
from sharing_lab.data import load_data
from sharing_lab.errors import InputError
from sharing_lab.runs.records import SCHEMAS, RecordWriter
from sharing_lab.search import loop
from sharing_lab.search.probes import Probe, ProbeView, SharingProbe, coupled_gradient, default_probes
from sharing_lab.search.probes.sharing_probe import _pair_phi
from sharing_lab.search.session import Search, open_search
from sharing_lab.search.supernet import Supernet
from sharing_lab.space.layout import build_layout
from sharing_lab.space.search_space import SearchSpace

PROBE_SCALARS = {"phi_code", "cos_align", "coupled_norm", "kernel_grad_norm"}  # the scalars SharingProbe writes
TINY = [
    "data.name=synthetic", "model.name=resnet20", "model.widths=[2,4]", "model.granularity=stage",
    "search.epochs=2", "search.warmup_epochs=1", "data.batch_size=32", "search.eval_every=1",
    "search.eval_archs=2", "search.beam_top=2", "probes.every_epochs=1", "probes.align_archs=3",
    "probes.probe_batch=32", "data.reward_batch_size=32", "data.calibration_images=32", "data.eval_batch_size=64",
    "data.eval_images=32", "search.prob_samples=4", "search.controller_hidden=16", "device=cpu", "seed=3",
]
STEPS_PER_EPOCH = 8  # synthetic: 256 training images, batch 32
EPOCHS = 2


# --- explicit reference computations (float64, numpy, no sharing_lab code) -------------------------------------
def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().cpu().numpy()


def _sq(m: np.ndarray) -> float:
    return float((m * m).sum())


def _explicit_pair_phi(P, Q, used_a, used_b) -> float:
    """‖Q^{iᵀ}Q^{ĩ}‖²_F · ‖P^{oᵀ}P^{õ}‖²_F (Definition 3.1); Q None: a depthwise layer, input factor 1."""
    (i_a, o_a), (i_b, o_b) = used_a, used_b
    value = _sq(_np(P[o_a]).T @ _np(P[o_b]))
    if Q is not None:
        value *= _sq(_np(Q[i_a]).T @ _np(Q[i_b]))
    return value


def _explicit_phi(P, Q) -> float:
    """Eq. 4 as written: Σ_{i≤ĩ} Σ_{o≤õ} ‖Q^{iᵀ}Q^{ĩ}‖²_F ‖P^{oᵀ}P^{õ}‖²_F (no factorisation)."""
    total = 0.0
    for i, i2 in itertools.combinations_with_replacement(range(len(Q)), 2):
        for o, o2 in itertools.combinations_with_replacement(range(len(P)), 2):
            total += _sq(_np(Q[i]).T @ _np(Q[i2])) * _sq(_np(P[o]).T @ _np(P[o2]))
    return total


def _explicit_phi_code(P, Q) -> float:
    """The authors' code's level: L1 of the off-diagonal Gram entries of the concatenated P, plus the same of Q."""
    total = 0.0
    for side in (P, Q):
        stacked = np.concatenate([_np(t) for t in side], axis=1)
        gram = stacked.T @ stacked
        total += float(np.abs(gram).sum() - np.abs(np.diag(gram)).sum())
    return total


def _explicit_coupled(P, Q, grad_b: np.ndarray, used_a, used_b) -> np.ndarray:
    """(Q^a)ᵀQ^b G^b (P^b)ᵀP^a with the kernel laid out (out, in, k, k): P^{o_a ᵀ}P^{o_b} G[:, :, h, w] Q^{i_b ᵀ}Q^{i_a}
    for every spatial position, written as loops of 2-D matrix products."""
    (i_a, o_a), (i_b, o_b) = used_a, used_b
    out_map = _np(P[o_a]).T @ _np(P[o_b])
    in_map = _np(Q[i_b]).T @ _np(Q[i_a]) if Q is not None else None
    result = np.zeros((out_map.shape[0], grad_b.shape[1] if in_map is None else in_map.shape[1], *grad_b.shape[2:]))
    for h in range(grad_b.shape[2]):
        for w in range(grad_b.shape[3]):
            block = out_map @ grad_b[:, :, h, w]
            result[:, :, h, w] = block if in_map is None else block @ in_map
    return result


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float((a * b).sum() / (np.linalg.norm(a) * np.linalg.norm(b)))


def _side(widths, meta, generator, scheme: str | None = None) -> TransformSet:
    """One side of a hand-built layer: exact scheme transforms, or random Gaussian (non-orthogonal) ones."""
    if scheme is not None:
        transforms = get_scheme(scheme).make(widths, meta)
    else:
        transforms = Transforms(tuple(torch.randn(meta, w, generator=generator) for w in widths), None)
    return TransformSet(widths, transforms, movable=False)


def _random_conv(seed: int = 0, depthwise: bool = False) -> APSConv2d:
    g = torch.Generator().manual_seed(seed)
    out_side = _side((2, 3, 5), 7, g)
    in_side = None if depthwise else _side((1, 2, 4), 6, g)
    return APSConv2d(out_side, in_side, 3, 1, g)


def _candidate_pairs(module) -> list[tuple[int, int]]:
    n_in = 1 if module.in_side is None else len(module.in_side.widths)
    return [(i, o) for i in range(n_in) for o in range(len(module.out_side.widths))]


def _kernel_shape(module, used) -> tuple[int, ...]:
    i, o = used
    in_width = 1 if module.in_side is None else module.in_side.widths[i]
    return (module.out_side.widths[o], in_width, module.kernel_size, module.kernel_size)


# --- 1(b): the coupled gradient --------------------------------------------------------------------------------
@pytest.mark.parametrize("depthwise", [False, True])
def test_coupled_gradient_equals_the_explicit_matrix_product(depthwise):
    module = _random_conv(1, depthwise)
    P = module.out_side.matrices
    Q = None if depthwise else module.in_side.matrices
    g = torch.Generator().manual_seed(5)
    checked = 0
    for used_a, used_b in itertools.product(_candidate_pairs(module), repeat=2):
        grad_b = torch.randn(_kernel_shape(module, used_b), generator=g)
        got = coupled_gradient(module, grad_b, used_a, used_b)
        want = _explicit_coupled(P, Q, _np(grad_b), used_a, used_b)
        assert got.shape == want.shape == _kernel_shape(module, used_a), (used_a, used_b)
        scale = max(np.abs(want).max(), 1.0)
        np.testing.assert_allclose(_np(got), want, rtol=1e-4, atol=1e-5 * scale, err_msg=str((used_a, used_b)))
        checked += 1
    assert checked == len(_candidate_pairs(module)) ** 2


def test_coupled_gradient_is_what_a_meta_weight_step_from_b_does_to_a_kernel():
    """Semantic check: the meta-weight gradient of b's kernel gradient G^b, read through a's transforms (Eq. 2),
    is the coupled gradient (the part of G^b that lands on a's kernel)."""
    module = _random_conv(2)
    g = torch.Generator().manual_seed(6)
    for used_a, used_b in [((0, 0), (2, 1)), ((1, 2), (0, 1)), ((2, 0), (2, 2)), ((1, 1), (1, 1))]:
        grad_b = torch.randn(_kernel_shape(module, used_b), generator=g)
        (meta_grad,) = torch.autograd.grad((module.kernel(*used_b) * grad_b).sum(), module.weight)
        landed = candidate_kernel(meta_grad, module.out_side, used_a[1], module.in_side, used_a[0])
        torch.testing.assert_close(coupled_gradient(module, grad_b, used_a, used_b), landed, rtol=1e-4, atol=1e-4)


def test_coupled_gradient_vanishes_for_independent_and_is_identity_for_the_same_ordinal_candidate():
    widths_out, widths_in = (2, 3, 4), (1, 3)
    g = torch.Generator().manual_seed(7)
    for scheme in ("independent", "ordinal"):
        out_side = _side(widths_out, 9, None, scheme)
        in_side = _side(widths_in, 4, None, scheme)
        assert out_side.exact and in_side.exact
        module = APSConv2d(out_side, in_side, 3, 1, g)
        for used_a, used_b in itertools.product(_candidate_pairs(module), repeat=2):
            grad_b = torch.randn(_kernel_shape(module, used_b), generator=g)
            coupled = coupled_gradient(module, grad_b, used_a, used_b)
            if used_a == used_b:  # P^{oᵀ}P^o = I and Q^{iᵀ}Q^i = I exactly for identity slices
                assert torch.equal(coupled, grad_b), (scheme, used_a)
            elif scheme == "independent":  # disjoint ranges: not one entry of G^b lands on a's kernel
                assert torch.count_nonzero(coupled) == 0, (used_a, used_b)
            else:  # ordinal nests the ranges: the shared top-left block is passed on unchanged
                o, i = min(used_a[1], used_b[1]), min(used_a[0], used_b[0])
                rows, cols = widths_out[o], widths_in[i]
                assert torch.equal(coupled[:rows, :cols], grad_b[:rows, :cols]), (used_a, used_b)
                assert torch.count_nonzero(coupled[rows:]) == 0 and torch.count_nonzero(coupled[:, cols:]) == 0


# --- 1(c): the pair sharing level ------------------------------------------------------------------------------
@pytest.mark.parametrize("depthwise", [False, True])
def test_pair_phi_is_the_product_of_squared_cross_gram_norms(depthwise):
    module = _random_conv(3, depthwise)
    P = module.out_side.matrices
    Q = None if depthwise else module.in_side.matrices
    for used_a, used_b in itertools.product(_candidate_pairs(module), repeat=2):
        want = _explicit_pair_phi(P, Q, used_a, used_b)
        assert _pair_phi(module, used_a, used_b) == pytest.approx(want, rel=1e-5), (used_a, used_b)
        if Q is not None:
            (i_a, o_a), (i_b, o_b) = used_a, used_b
            assert float(pair_level(P[o_a], P[o_b], Q[i_a], Q[i_b])) == pytest.approx(want, rel=1e-5)
    # Summed over i ≤ ĩ and o ≤ õ, the pair levels are the layer's Φ_l (Eq. 4)
    n_in = 1 if depthwise else len(Q)
    total = sum(_pair_phi(module, (i, o), (i2, o2))
                for i, i2 in itertools.combinations_with_replacement(range(n_in), 2)
                for o, o2 in itertools.combinations_with_replacement(range(len(P)), 2))
    assert total == pytest.approx(float(sharing_lab.phi(*module.sides())), rel=1e-5)
    assert total == pytest.approx(_explicit_phi(P, Q if Q is not None else [torch.ones(1, 1)]), rel=1e-5)


# --- 1(a): SharingProbe against a direct computation, through a hand-made probe view ------------------------------
def _reference_gradients(supernet: Supernet, x, y, arch):
    """Meta-weight gradients of one architecture by plain autograd on a copy, and the (i, o) each APS layer was
    called with (read by forward hooks, not by sharing_lab's bookkeeping); None for an unused layer."""
    net = copy.deepcopy(supernet)
    net.train()
    modules = [m for _, m in net.aps_layers()]
    called: dict[int, tuple[int, int]] = {}

    def hook(index):
        def record(module, args, output):
            called[index] = (int(args[1]), int(args[2]) if len(args) > 2 else 0)
        return record

    handles = [m.register_forward_hook(hook(k)) for k, m in enumerate(modules)]
    try:
        loss = F.cross_entropy(net(x, arch), y)
        grads = torch.autograd.grad(loss, [m.weight for m in modules], allow_unused=True)
    finally:
        for handle in handles:
            handle.remove()
    used = [called.get(k) for k in range(len(modules))]
    assert [u is None for u in used] == [g is None for g in grads]  # used ⇔ the meta-weight gets a gradient
    return used, [None if grad is None else _np(grad) for grad in grads]


def _fake_view(supernet: Supernet, run_dir: Path, step: int, epoch: int) -> ProbeView:
    """What the search loop would hand a probe: the supernet's space, the first training images, a writer."""
    data = load_data("synthetic", seed=0)

    def batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return data.batch("train", torch.arange(min(n, data.split_size("train"))))

    return ProbeView(supernet.space, supernet, batch, RecordWriter(run_dir, run_dir.name), step, epoch)


def _expected_probe(supernet, archs, x, y):
    """Rows of ``pairs`` keyed by (a, b, layer), per-layer means and the network scalars, computed directly."""
    modules = [m for _, m in supernet.aps_layers()]
    refs = [_reference_gradients(supernet, x, y, arch) for arch in archs]
    pairs: dict[tuple[int, int, int], tuple[float, float]] = {}
    layer_cos = [[] for _ in modules]
    layer_coupled = [[] for _ in modules]
    network_cos = []
    for a, b in itertools.combinations(range(len(archs)), 2):
        (used_a, grads_a), (used_b, grads_b) = refs[a], refs[b]
        flat = [np.concatenate([(g if g is not None else np.zeros(tuple(m.weight.shape))).ravel()
                                for g, m in zip(grads, modules)]) for grads in (grads_a, grads_b)]
        network_cos.append(_cos(*flat))
        network_phi = 0.0
        for k, module in enumerate(modules):
            ua, ub = used_a[k], used_b[k]
            if ua is None or ub is None:
                continue
            P = module.out_side.matrices
            Q = module.in_side.matrices if module.in_side is not None else None
            cos = _cos(grads_a[k], grads_b[k])
            pair_phi = _explicit_pair_phi(P, Q, ua, ub)
            network_phi += pair_phi
            pairs[(a, b, k)] = (pair_phi, cos)
            layer_cos[k].append(cos)
            if ua != ub:  # the part of b's gradient landing on a's kernel is a's Eq. 2 applied to b's meta-gradient
                for first, meta_grad_second in ((ua, grads_b[k]), (ub, grads_a[k])):
                    i, o = first
                    landed = np.einsum("mn...,mx,ny->xy...", meta_grad_second, _np(P[o]),
                                       _np(Q[i]) if Q is not None else np.eye(meta_grad_second.shape[1]))
                    layer_coupled[k].append(float(np.linalg.norm(landed)))
        pairs[(a, b, -1)] = (network_phi, network_cos[-1])
    means = [[float(np.mean(v)) if v else math.nan for v in values] for values in (layer_cos, layer_coupled)]
    return pairs, means[0], means[1], network_cos


@pytest.mark.parametrize("scheme, granularity", [
    ("ordinal", "stage"), ("independent", "conv"), ("transitionary:0.3", "conv"), ("overlap:0.5", "block"),
])
def test_sharing_probe_matches_a_direct_computation(tmp_path, scheme, granularity):
    layout = build_layout("resnet20", granularity, [2, 4], num_classes=10, in_channels=3, image_size=8)
    supernet = Supernet(SearchSpace(layout, get_scheme(scheme)), seed=1)
    view = _fake_view(supernet, tmp_path / "fake", step=7, epoch=1)
    before = copy.deepcopy(supernet.state_dict())
    probe = SharingProbe(align_archs=3, probe_batch=32, seed=2)
    archs: list[tuple[int, ...]] = []
    space = supernet.space
    sample = space.sample_uniform
    space.sample_uniform = lambda generator=None: archs.append(sample(generator)) or archs[-1]
    probe.run(view)
    del space.sample_uniform
    view.writer.flush()
    assert len(archs) == 3 and len(set(archs)) >= 2, archs

    # the probe leaves the network as it found it: no parameter, buffer or .grad touched
    _assert_same_state(supernet.state_dict(), before, "supernet")
    assert all(p.grad is None for p in supernet.parameters())

    x, y = view.batch(32)
    pairs_want, cos_want, coupled_want, network_cos = _expected_probe(supernet, archs, x, y)
    run = tmp_path / "fake"
    pairs = sharing_lab.read_table(run, "pairs")
    assert (pairs["step"] == 7).all() and (pairs["epoch"] == 1).all()
    got = {(int(r.a), int(r.b), int(r.layer)): (r.phi_pair, r.cos) for r in pairs.itertuples()}
    assert got.keys() == pairs_want.keys()  # one row per pair and layer used by both, plus the network row
    for key, (phi_want, cos_want_pair) in pairs_want.items():
        phi_got, cos_got = got[key]
        assert phi_got == pytest.approx(phi_want, rel=1e-5, abs=1e-9), key
        assert cos_got == pytest.approx(cos_want_pair, abs=2e-4), key

    modules = list(supernet.aps_layers())
    layers = sharing_lab.read_table(run, "layers").sort_values("layer")
    assert layers["layer"].tolist() == list(range(len(modules)))
    assert layers["name"].tolist() == [name for name, _ in modules]
    for row, (_, module) in zip(layers.itertuples(), modules):
        P, Q = module.sides()
        assert row.phi == pytest.approx(_explicit_phi(P, Q), rel=1e-5), row.name
        assert row.phi_code == pytest.approx(_explicit_phi_code(P, Q), rel=1e-5, abs=1e-6), row.name
        want_cos, want_coupled = cos_want[row.layer], coupled_want[row.layer]
        if math.isnan(want_cos):
            assert math.isnan(row.cos_align), row.name
        else:
            assert row.cos_align == pytest.approx(want_cos, abs=2e-4), row.name
        if math.isnan(want_coupled):
            assert math.isnan(row.coupled_norm), row.name
        else:
            assert row.coupled_norm == pytest.approx(want_coupled, rel=1e-3, abs=1e-6), row.name
            assert row.kernel_grad_norm > 0, row.name
            if not scheme.startswith("transitionary"):  # maps of slices / orthonormal columns do not lengthen it
                assert row.coupled_norm <= row.kernel_grad_norm * (1 + 1e-5), row.name
    assert layers["cos_align"].notna().any() and layers["coupled_norm"].notna().any()

    scalars = sharing_lab.read_table(run, "scalars").set_index("name")["value"]
    assert set(scalars.index) == PROBE_SCALARS
    assert scalars["cos_align"] == pytest.approx(float(np.mean(network_cos)), abs=2e-4)
    finite = [v for v in coupled_want if not math.isnan(v)]
    assert scalars["coupled_norm"] == pytest.approx(float(np.mean(finite)), rel=1e-3, abs=1e-6)
    assert scalars["phi_code"] == pytest.approx(sum(_explicit_phi_code(*m.sides()) for _, m in modules), rel=1e-5)
    if scheme == "independent":
        assert scalars["coupled_norm"] < 1e-6
    else:
        assert scalars["coupled_norm"] > 1e-3


# --- searches ----------------------------------------------------------------------------------------------------
class EveryOtherStep(Probe):
    """A user probe: every second step, one row in its own table ``mytable``."""

    name = "mytable"

    def __init__(self) -> None:
        super().__init__(every_steps=2)
        self.calls = 0

    def run(self, view: ProbeView) -> None:
        self.calls += 1
        phi_now = float(sum(view.supernet.phi_per_layer()))
        view.writer.add("mytable", [{"step": view.step, "epoch": view.epoch, "calls": self.calls,
                                     "phi_now": phi_now}])


def _config(*extra: str) -> Config:
    return apply_overrides(Config(), [*TINY, *extra])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny searches, each run once for the module: name → (Search after run(), run directory, custom probe)."""
    done: dict[str, tuple[Search, Path, EveryOtherStep | None]] = {}

    def get(name: str) -> tuple[Search, Path, EveryOtherStep | None]:
        if name not in done:
            scheme, _, probes = name.partition("-")
            config = _config(f"sharing.scheme={scheme}", *(["probes.enabled=false"] if probes == "off" else []))
            run_dir = tmp_path_factory.mktemp(name) / "r"  # the same run name everywhere: comparable records
            run_dir.mkdir()
            custom = EveryOtherStep() if probes == "custom" else None
            user = [*default_probes(config.probes, config.seed), custom] if custom is not None else None
            search = open_search(config, run_dir, log=lambda _: None, probes=user)
            loop.run(search)
            done[name] = (search, run_dir, custom)
        return done[name]

    return get


def _assert_same_state(a, b, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_same_state(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for index, (x, y) in enumerate(zip(a, b)):
            _assert_same_state(x, y, f"{where}[{index}]")
    else:
        assert a == b or (a != a and b != b), (where, a, b)


def test_probes_leave_the_search_unchanged(runs):
    on, on_dir, _ = runs("transitionary-custom")
    off, off_dir, _ = runs("transitionary-off")
    on_state, off_state = on.state, off.state
    assert on_state.probes and not off_state.probes
    assert on_state.step == off_state.step == EPOCHS * STEPS_PER_EPOCH
    _assert_same_state(on.supernet.state_dict(), off.supernet.state_dict(), "supernet")
    _assert_same_state(on_state.controller.state_dict(), off_state.controller.state_dict(), "controller")
    _assert_same_state(on_state.reinforce.state_dict(), off_state.reinforce.state_dict(), "reinforce")
    _assert_same_state(on_state.optimizer.state_dict(), off_state.optimizer.state_dict(), "optimizer")
    _assert_same_state({k: g.get_state() for k, g in on_state.generators.items()},
                       {k: g.get_state() for k, g in off_state.generators.items()}, "generators")

    def own(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame[~frame["name"].isin(PROBE_SCALARS)]
        return frame.sort_values(["step", "name"], kind="stable").reset_index(drop=True)

    scalars_on, scalars_off = (sharing_lab.read_table(d, "scalars") for d in (on_dir, off_dir))
    assert PROBE_SCALARS <= set(scalars_on["name"]) and not PROBE_SCALARS & set(scalars_off["name"])
    assert {"train_loss", "train_acc", "reward", "val_acc_mean", "phi"} <= set(own(scalars_off)["name"])
    pd.testing.assert_frame_equal(own(scalars_on), own(scalars_off), check_exact=True)
    for table in ("archs", "probs"):
        pd.testing.assert_frame_equal(sharing_lab.read_table(on_dir, table), sharing_lab.read_table(off_dir, table),
                                      check_exact=True, obj=table)


def test_a_user_probe_writes_its_own_table(runs):
    search, run_dir, custom = runs("transitionary-custom")
    steps = list(range(2, EPOCHS * STEPS_PER_EPOCH + 1, 2))
    assert custom.calls == len(steps)  # due() every second step; no extra call at epoch ends (every_steps > 0)
    table = sharing_lab.read_table(run_dir, "mytable")
    assert table["step"].tolist() == steps
    assert table["epoch"].tolist() == [(s - 1) // STEPS_PER_EPOCH for s in steps]
    assert table["calls"].tolist() == list(range(1, len(steps) + 1))
    assert (table["run"] == run_dir.name).all()
    # it read the live search: at the last step its Φ is the one the search records at that epoch end
    scalars = sharing_lab.read_table(run_dir, "scalars")
    last_phi = scalars[(scalars["name"] == "phi") & (scalars["step"] == steps[-1])]["value"]
    assert table["phi_now"].iloc[-1] == pytest.approx(float(last_phi.iloc[0]), rel=1e-9)
    # the built-in probe still ran alongside it
    assert len(sharing_lab.read_table(run_dir, "layers")) > 0


def _side_level(widths: tuple[int, ...], scheme: str) -> int:
    """Σ_{a≤b} ‖T^{aᵀ}T^b‖²_F for identity-slice transforms: min(c_a, c_b) nested (ordinal), δ_ab c_a disjoint."""
    return sum(min(widths[a], widths[b]) if scheme == "ordinal" else (widths[a] if a == b else 0)
               for a, b in itertools.combinations_with_replacement(range(len(widths)), 2))


def _expected_layer_phi(search: Search, scheme: str) -> list[float]:
    return [_side_level(m.out_side.widths, scheme) * (1 if m.in_side is None else _side_level(m.in_side.widths, scheme))
            for _, m in search.supernet.aps_layers()]


def _check_layers_table(search: Search, run_dir: Path) -> pd.DataFrame:
    layers = sharing_lab.read_table(run_dir, "layers")
    n_layers = len(list(search.supernet.aps_layers()))
    layout = search.space.layout
    assert n_layers == len(layout.convs()) + sum(b.projection_possible() for b in layout.blocks) + 1  # + classifier
    probe_steps = [STEPS_PER_EPOCH * (epoch + 1) for epoch in range(EPOCHS)]  # every epoch end (every_epochs=1)
    assert sorted(set(layers["step"])) == probe_steps
    for step, group in layers.groupby("step"):
        assert sorted(group["layer"]) == list(range(n_layers)), step  # one row per APS layer, none twice
        assert (group["epoch"] == step // STEPS_PER_EPOCH - 1).all()
    for column in ("step", "epoch", "layer"):
        assert layers[column].dtype == "int64", column
    for column in ("phi", "cos_align", "coupled_norm", "phi_code"):
        assert layers[column].dtype == "float64", column
    scalars = sharing_lab.read_table(run_dir, "scalars")
    for step in probe_steps:
        at = scalars[scalars["step"] == step].set_index("name")["value"]
        assert {"phi", "cos_align", "coupled_norm", "phi_code"} <= set(at.index), step
        # the network Φ the search records is the sum of the per-layer Φ the probe records at that step
        assert at["phi"] == pytest.approx(layers[layers["step"] == step]["phi"].sum(), rel=1e-6)
        assert -1 <= at["cos_align"] <= 1
    return layers


def test_layers_table_and_fixed_phi_of_ordinal_and_independent(runs):
    for scheme in ("ordinal", "independent"):
        search, run_dir, _ = runs(f"{scheme}-on")
        layers = _check_layers_table(search, run_dir)
        expected = _expected_layer_phi(search, scheme)
        for step, group in layers.groupby("step"):  # Φ stays at its extreme all run long
            assert group.sort_values("layer")["phi"].tolist() == pytest.approx(expected, rel=1e-6), (scheme, step)
        scalars = sharing_lab.read_table(run_dir, "scalars")
        phis = scalars[scalars["name"] == "phi"]["value"]
        assert phis.tolist() == pytest.approx([sum(expected)] * EPOCHS, rel=1e-6)
        coupled_layers = layers["coupled_norm"].dropna()
        coupled = scalars[scalars["name"] == "coupled_norm"]["value"]
        assert len(coupled_layers) > 0 and len(coupled) == EPOCHS
        if scheme == "independent":  # exact disjoint transforms: nothing lands on another candidate's kernel
            assert (coupled_layers.abs() <= 1e-6).all() and (coupled.abs() <= 1e-6).all()
        else:
            assert (coupled > 0).all() and (coupled_layers > 0).all()  # a non-NaN mean has a pair that differs
    # ordinal attains the maximum and independent the minimum (Theorem 3.1 (b)) on the same supernet
    assert sum(_expected_layer_phi(runs("ordinal-on")[0], "ordinal")) == 1384  # ResNet-20, stage, {2, 4}
    assert sum(_expected_layer_phi(runs("independent-on")[0], "independent")) == 798


def test_transitionary_phi_falls_after_the_warm_up(runs):
    search, run_dir, _ = runs("transitionary-custom")
    layers = _check_layers_table(search, run_dir)
    start = Supernet(SearchSpace(search.space.layout, search.space.scheme), search.config.seed,
                     search.config.model.bn)
    start_phi = start.phi_per_layer()
    per_step = {step: group.sort_values("layer")["phi"].tolist() for step, group in layers.groupby("step")}
    warmup_end, last = STEPS_PER_EPOCH, EPOCHS * STEPS_PER_EPOCH
    # warm-up: P/Q fixed, Φ is the (noisy) ordinal start
    assert per_step[warmup_end] == pytest.approx(start_phi, rel=1e-7)
    assert sum(start_phi) > 1384 - 1  # near the ordinal maximum
    # search phase: Eq. 5 steps with τ = 1e-3 lower Φ visibly (float32 noise on Φ ≈ 1e-4)
    assert sum(per_step[last]) < sum(start_phi) - 3e-3, (sum(per_step[last]), sum(start_phi))
    assert sum(a < b for a, b in zip(per_step[last], start_phi)) > 0
    assert (layers["coupled_norm"].dropna() > 0).any()


# --- records: several independent readers; nothing when probes are off ------------------------------------------
def _canonical(frame: pd.DataFrame) -> pd.DataFrame:
    columns = ["run", *SCHEMAS["layers"], "phi_code"]
    return frame[columns].sort_values(["step", "layer"]).reset_index(drop=True)


def test_probe_records_read_back_with_independent_readers(runs):
    _, run_dir, _ = runs("transitionary-custom")
    reference = _canonical(sharing_lab.read_table(run_dir, "layers"))
    assert len(reference) > 0
    readers = {
        "pandas": pd.read_parquet(run_dir / "layers"),
        "pyarrow.parquet": pq.read_table(run_dir / "layers").to_pandas(),
        "pyarrow.dataset": pads.dataset(run_dir / "layers", format="parquet").to_table().to_pandas(),
    }
    schema = pads.dataset(run_dir / "layers", format="parquet").schema
    for column, dtype in SCHEMAS["layers"].items():
        assert schema.field(column).type == dtype, column
    assert schema.field("phi_code").type == pa.float64()
    for name, frame in readers.items():
        got = _canonical(frame)
        got["run"] = got["run"].astype(str)
        pd.testing.assert_frame_equal(got, reference.assign(run=reference["run"].astype(str)), check_dtype=False,
                                      obj=name)
        assert got["layer"].dtype == "int64" and got["phi"].dtype == "float64", name
    pairs = pq.read_table(run_dir / "pairs")
    assert pairs.num_rows == len(sharing_lab.read_table(run_dir, "pairs")) > 0
    assert set(pairs.column("layer").to_pylist()) >= {-1, 0}


def test_probe_records_read_back_with_duckdb(runs):
    duckdb = pytest.importorskip("duckdb")
    _, run_dir, _ = runs("transitionary-custom")
    reference = _canonical(sharing_lab.read_table(run_dir, "layers"))
    frame = duckdb.sql(f"SELECT * FROM read_parquet('{run_dir / 'layers'}/*.parquet')").df()
    pd.testing.assert_frame_equal(_canonical(frame).astype({"run": str}), reference.astype({"run": str}),
                                  check_dtype=False)


def test_probe_records_read_back_with_polars(runs):
    polars = pytest.importorskip("polars")
    _, run_dir, _ = runs("transitionary-custom")
    reference = _canonical(sharing_lab.read_table(run_dir, "layers"))
    frame = polars.read_parquet(str(run_dir / "layers" / "*.parquet")).to_pandas()
    pd.testing.assert_frame_equal(_canonical(frame).astype({"run": str}), reference.astype({"run": str}),
                                  check_dtype=False)


def test_disabled_probes_write_no_probe_records(runs):
    search, run_dir, _ = runs("transitionary-off")
    assert search.state.probes == [] and default_probes(search.config.probes) == []
    for table in ("layers", "pairs"):
        assert not list(run_dir.glob(f"{table}/*.parquet")), table
        assert len(sharing_lab.read_table(run_dir, table)) == 0
    names = set(sharing_lab.read_table(run_dir, "scalars")["name"])
    assert "phi" in names and not names & PROBE_SCALARS
    assert len(sharing_lab.read_table(run_dir, "archs")) > 0


def test_probes_names_chooses_the_registered_probes():
    config = Config()
    assert config.probes.names == ("sharing",)
    built = default_probes(config.probes, seed=1)
    assert len(built) == 1 and isinstance(built[0], SharingProbe)
    assert default_probes(apply_overrides(config, ["probes.names=[]"]).probes) == []
    with pytest.raises(InputError, match="nosuchprobe"):
        default_probes(apply_overrides(config, ["probes.names=['nosuchprobe']"]).probes)
