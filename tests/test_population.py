"""A population of plain networks as one computation (sharing_lab.space.population) against its members one at a
time: forward, backward, BatchNorm in train and eval mode, an optimiser step, a short training run; padded
entries get exactly zero gradient and stay zero."""

from __future__ import annotations

import copy
import dataclasses
import itertools

import pytest
import torch
import torch.nn.functional as F

from sharing_lab.space.layout import build_layout
from sharing_lab.space.plain import PlainNet
from sharing_lab.space.population import Population, build_population

TOL = dict(rtol=1e-4, atol=1e-5)  # float rounding: grouped kernels add in another order


def _layouts():
    digits = build_layout("resnet20", "stage", [1, 2, 3, 4], num_classes=10, in_channels=1, image_size=8)
    blocks = build_layout("resnet20", "block", [2, 3], num_classes=10, in_channels=3, image_size=8)
    mobile = build_layout("mobilenetv2", None, None, [0.25, 0.5], num_classes=10, in_channels=3, image_size=16)
    return {"digits-stage": digits, "resnet20-block": blocks, "mobilenetv2": mobile}


LAYOUTS = _layouts()


def _members(layout, count: int, seed: int = 0) -> list[tuple[int, ...]]:
    generator = torch.Generator().manual_seed(seed)
    every = list(itertools.product(*(range(len(d.candidates)) for d in layout.decisions)))
    picks = torch.randperm(len(every), generator=generator)[:count].tolist() if len(every) > count else range(
        len(every))
    return [layout.widths_of(every[i]) for i in picks]


def _pair(layout, members, seed: int = 0):
    population = build_population(layout, members, seeds=seed)
    nets = []
    for widths in members:
        torch.manual_seed(seed)
        nets.append(PlainNet(layout, widths))
    return population, nets


def _data(layout, batch: int = 16, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    size = layout.image_size
    x = torch.randn(batch, layout.in_channels, size, size, generator=generator)
    return x, torch.randint(0, layout.num_classes, (batch,), generator=generator)


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_the_forward_is_each_members_own_in_train_and_eval_mode(name):
    """To float rounding: each member's logits are as close to its own network's in float64 as that network's
    own float32 logits are (within a small factor; a deep MobileNetV2 in train mode amplifies rounding through its
    BatchNorms to 1e-4, the population's and the network's alike)."""
    layout = LAYOUTS[name]
    members = _members(layout, 12)
    population, nets = _pair(layout, members)
    exact = [copy.deepcopy(net).double() for net in nets]
    x, _ = _data(layout)
    for train in (True, False):
        population.train(train)
        out = population(x).double()
        for n, net in enumerate(nets):
            net.train(train)
            exact[n].train(train)
            reference = exact[n](x.double())
            own = (net(x).double() - reference).abs().max().item()
            assert (out[:, n] - reference).abs().max().item() <= 10 * own + 1e-6, (train, n)
    # the train-mode passes updated the running statistics: each member's BatchNorm buffers are its own
    for n, net in enumerate(nets):
        state = population.member_state(n)
        for key, value in net.state_dict().items():
            if "running" in key:
                torch.testing.assert_close(state[key], value, **TOL)


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_each_members_gradient_is_its_own_and_the_padding_gets_exactly_zero(name):
    """To float rounding, against float64: the members' gradients are as far from their own networks' float64
    gradients as those networks' float32 gradients are (the worst member of each, within a small factor: a
    MobileNetV2 of tiny widths puts float32 gradients 1e-2 of their scale off float64, its own and the
    population's alike); the padding's gradients are exactly zero."""
    layout = LAYOUTS[name]
    members = _members(layout, 8)
    population, nets = _pair(layout, members)
    x, y = _data(layout)
    Population.loss(population(x), y).backward()
    worst_population = worst_own = 0.0
    for n, net in enumerate(nets):
        exact = copy.deepcopy(net).double()
        F.cross_entropy(net(x), y).backward()
        F.cross_entropy(exact(x.double()), y).backward()
        grads, reference = population.member_state(n, grad=True), dict(exact.named_parameters())
        scale = max(p.grad.abs().max().item() for p in reference.values())
        worst_population = max(worst_population, max(
            (grads[key].double() - reference[key].grad).abs().max().item() for key in grads) / scale)
        worst_own = max(worst_own, max(
            (p.grad.double() - reference[key].grad).abs().max().item() for key, p in net.named_parameters()) / scale)
    assert worst_population <= 10 * worst_own + 1e-6
    for parameter, padding in _padding(population):
        assert torch.equal(parameter.grad[padding], torch.zeros_like(parameter.grad[padding]))


def _padding(population: Population):
    """(parameter, boolean mask of its padded entries) for every parameter of the population: the entries that no
    member's own network owns."""
    parameters = dict(population.named_parameters())
    masks = {}
    with torch.no_grad():
        for name, parameter in parameters.items():
            saved = parameter.detach().clone()
            parameter.fill_(0.0)
            for n in range(population.count):
                for view in _views(population, n, parameter):
                    view.fill_(1.0)
            masks[name] = parameter == 0
            parameter.copy_(saved)
    return [(parameters[name], masks[name]) for name in parameters]


def _views(population: Population, n: int, parameter: torch.Tensor):
    """Views into ``parameter`` of the entries member ``n``'s own network has."""
    for prefix, conv in population.convs():
        if prefix.endswith("shortcut.") and not population.blocks[int(prefix.split(".")[1])].projects[n]:
            continue
        rows = slice(n * conv.outputs.pad, n * conv.outputs.pad + conv.outputs.each[n])
        c_in = 1 if conv.spec.depthwise else conv.inputs.each[n]
        if parameter is conv.weight:
            yield conv.weight[rows, :c_in]
        if parameter is conv.bn.weight or parameter is conv.bn.bias:
            yield parameter[rows]
    if parameter is population.classifier_weight:
        yield parameter[n, :, :population.features.each[n]]
    if parameter is population.classifier_bias:
        yield parameter[n]


def test_sgd_steps_and_a_short_training_run_equal_the_members_own():
    """Five SGD steps (momentum, Nesterov, weight decay): each member's weights are as far from its own network's
    weights trained in float64 as that network's float32 training is (within a small factor); the padding stays
    exactly zero."""
    layout = LAYOUTS["digits-stage"]
    members = _members(layout, 16)
    population, nets = _pair(layout, members)
    exact = [copy.deepcopy(net).double() for net in nets]
    settings = dict(lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)
    optimisers = [torch.optim.SGD(population.parameters(), **settings)]
    optimisers += [torch.optim.SGD(net.parameters(), **settings) for net in [*nets, *exact]]
    for step in range(5):
        x, y = _data(layout, seed=10 + step)
        for optimiser in optimisers:
            optimiser.zero_grad()
        Population.loss(population(x), y).backward()
        for net in nets:
            F.cross_entropy(net(x), y).backward()
        for net in exact:
            F.cross_entropy(net(x.double()), y).backward()
        for optimiser in optimisers:
            optimiser.step()
    worst_population = worst_own = 0.0
    for n, (net, reference) in enumerate(zip(nets, exact)):
        state, own, exact_state = population.member_state(n), net.state_dict(), reference.state_dict()
        for key, value in exact_state.items():
            if key.endswith("num_batches_tracked"):
                assert state[key] == value
                continue
            worst_population = max(worst_population, (state[key].double() - value).abs().max().item())
            worst_own = max(worst_own, (own[key].double() - value).abs().max().item())
    assert worst_population <= 10 * worst_own + 1e-6
    for parameter, padding in _padding(population):
        assert torch.equal(parameter.detach()[padding], torch.zeros_like(parameter.detach()[padding]))


def test_a_member_unpacked_is_a_plain_network_that_computes_the_same():
    layout = LAYOUTS["resnet20-block"]
    members = _members(layout, 5)
    population, _ = _pair(layout, members, seed=3)
    x, _ = _data(layout)
    population.eval()
    out = population(x)
    for n, widths in enumerate(members):
        net = PlainNet(layout, widths)
        net.load_state_dict(population.member_state(n))
        net.eval()
        torch.testing.assert_close(out[:, n], net(x), **TOL)


def test_load_members_refuses_networks_of_other_widths():
    layout = LAYOUTS["digits-stage"]
    members = [(1, 1, 1), (2, 2, 2), (4, 4, 4)]
    with pytest.raises(ValueError, match="widths"):
        Population(layout, members).load_members([PlainNet(layout, (4, 4, 4)).state_dict()] * 3)
    with pytest.raises(ValueError, match="2 networks for a population of 3"):
        Population(layout, members).load_members([PlainNet(layout, w).state_dict() for w in members[:2]])


# --- architectures of one supernet: shared weights, each prefix computed once -----------------------------------
def _search(tmp_path, *overrides):
    from test_search_cli import TINY

    from sharing_lab.config import resolve
    from sharing_lab.search.loop import train_epoch
    from sharing_lab.search.session import open_search

    config = resolve(None, [*TINY, "model.widths=[1,2,3]", "search.epochs=2", "search.warmup_epochs=1",
                            "sharing.scheme=transitionary", *overrides])
    run = tmp_path / "run"
    run.mkdir()
    search = open_search(config, run, log=lambda message: None)
    train_epoch(search)  # weights and transforms away from their start
    search.state.epoch += 1
    train_epoch(search)
    return search


def test_a_shared_population_computes_each_architecture_of_a_supernet(tmp_path):
    from sharing_lab.space.shared_population import SharedPopulation

    search = _search(tmp_path)
    space, supernet = search.space, search.supernet
    archs = list(space.enumerate())
    members = [space.widths_of(arch) for arch in archs]
    population = SharedPopulation(space.layout, members).load_members(supernet.plain_states(archs))
    assert [len(r) for r in population.representatives] == [3] * 4 + [9] * 3 + [27] * 3  # stem, stage 1; 2; 3
    x, _ = _data(space.layout, batch=32)
    population.train()
    supernet.train()
    out = population(x)
    for n, arch in enumerate(archs):  # batch statistics in both: the same function of the same weights
        torch.testing.assert_close(out[:, n], supernet(x, arch), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("bn", ["recalibrated", "batch"])
def test_scoring_many_architectures_at_once_equals_one_at_a_time(tmp_path, bn):
    search = _search(tmp_path, f"search.bn_evaluation={bn}")
    archs = list(search.space.enumerate())
    def tensors():
        return {key: value.clone() for key, value in search.supernet.state_dict().items()
                if isinstance(value, torch.Tensor)}

    before = tensors()
    together = search.score.many(archs)
    assert all(torch.equal(value, before[key]) for key, value in tensors().items())  # the supernet is untouched
    alone = [search.score(arch) for arch in archs]
    images = search.data.split_size("val")
    assert max(abs(a - b) for a, b in zip(together, alone)) <= 1 / images  # a near tie may flip, no more
    assert search.score.many(archs[:5], "test") == search.score.many(archs, "test")[:5]


def test_scoring_falls_back_to_one_at_a_time_where_operators_are_large(tmp_path):
    """A population pads every member to the widest member's channels: it pays only where an operator costs its
    call (the embedded space), not where it costs its arithmetic (there ``many`` scores one at a time)."""
    search = _search(tmp_path)
    archs = list(search.space.enumerate())[:6]
    assert search.score.population_pays(archs)
    large = dataclasses.replace(search.score, batch_size=10**6)
    assert not large.population_pays(archs)
    assert large.many(archs) == [large(arch) for arch in archs]
