"""Module bookkeeping: registration, traversal, state_dict, freezing, modes, repr, containers."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import tensorcalc as tc
import tensorcalc.functional as F
import tensorcalc.nn as nn


class Net(nn.Module):
    def __init__(self, rng=0):
        super().__init__()
        self.fc1 = nn.Linear(4, 8, rng=rng)
        self.bn = nn.BatchNorm1d(8)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(8, 3, rng=rng)
        self.scale = nn.Parameter(np.ones(3, np.float32))
        self.register_buffer("counter", np.zeros(2, np.float32))
        self.register_buffer("scratch", np.zeros(1, np.float32), persistent=False)
        self.plain = 5

    def forward(self, x):
        return self.fc2(self.act(self.bn(self.fc1(x)))) * self.scale


def test_registration_and_names():
    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["scale", "fc1.weight", "fc1.bias", "bn.weight", "bn.bias", "fc2.weight",
                     "fc2.bias"]
    assert [n for n, _ in net.named_buffers()] == [
        "counter", "scratch", "bn.running_mean", "bn.running_var", "bn.num_batches_tracked"]
    assert [type(m).__name__ for m in net.children()] == ["Linear", "BatchNorm1d", "ReLU",
                                                          "Linear"]
    assert len(list(net.modules())) == 5
    assert net.num_parameters() == 4 * 8 + 8 + 8 + 8 + 8 * 3 + 3 + 3
    assert net.plain == 5 and "plain" not in net._parameters
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in net.parameters())


def test_shared_parameter_counted_once_and_reassignment():
    a = nn.Linear(3, 3, rng=0)
    seq = nn.Sequential(a, nn.ReLU(), a)
    assert len(list(seq.parameters())) == 2
    assert seq.num_parameters() == 12
    m = nn.Module()
    m.w = nn.Parameter(np.zeros(2))
    m.w = nn.Linear(2, 2)  # a Parameter name becomes a module
    assert "w" not in m._parameters and "w" in m._modules
    with pytest.raises(TypeError, match="Parameter"):
        a.weight = tc.zeros((3, 3))
    del m.w
    assert "w" not in m._modules and not hasattr(m, "w")


def test_forgot_super_init():
    class Bad(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(2, 2)

    with pytest.raises(AttributeError, match=r"super\(\)\.__init__\(\)"):
        Bad()


def test_state_dict_round_trip_is_exact_and_copies():
    net, other = Net(rng=0), Net(rng=1)
    x = tc.randn(5, 4, rng=3)
    net(x)  # moves the running statistics away from their initial values
    sd = net.state_dict()
    assert "scratch" not in sd and "counter" in sd and "bn.running_mean" in sd
    assert all(isinstance(v, np.ndarray) for v in sd.values())
    sd_before = {k: v.copy() for k, v in sd.items()}
    sd["fc1.weight"][...] = 123.0  # a copy: the model must not change
    assert not np.any(net.fc1.weight.numpy() == 123.0)
    sd = net.state_dict()
    keep = other.fc1.weight
    res = other.load_state_dict(sd)
    assert res.missing_keys == [] and res.unexpected_keys == []
    assert other.fc1.weight is keep  # loaded in place: optimisers keep their references
    for k, v in other.state_dict().items():
        np.testing.assert_array_equal(v, sd_before[k])
        assert v.dtype == sd_before[k].dtype
    net.eval(), other.eval()
    np.testing.assert_array_equal(net(x).numpy(), other(x).numpy())


def test_load_state_dict_strict_errors_list_everything_and_change_nothing():
    net = Net()
    sd = net.state_dict()
    sd.pop("fc1.bias")
    sd["extra.weight"] = np.zeros(2)
    sd["fc2.weight"] = np.zeros((4, 8))
    before = Net().state_dict()
    target = Net()
    with pytest.raises(nn.StateDictError) as e:
        target.load_state_dict(sd)
    msg = str(e.value)
    assert "fc1.bias" in msg and "extra.weight" in msg
    assert "fc2.weight" in msg and "(4, 8)" in msg and "(3, 8)" in msg
    for k, v in target.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    # not strict: missing/unexpected are reported, shapes still checked
    with pytest.raises(nn.StateDictError, match="fc2.weight"):
        target.load_state_dict(sd, strict=False)
    sd["fc2.weight"] = np.zeros((3, 8))  # float64 into a float32 model: refused unless cast
    with pytest.raises(nn.StateDictError, match="fc2.weight: dtype float64"):
        target.load_state_dict(sd, strict=False)
    res = target.load_state_dict(sd, strict=False, cast=True)
    assert res.missing_keys == ["fc1.bias"] and res.unexpected_keys == ["extra.weight"]
    assert np.all(target.fc2.weight.numpy() == 0)


def test_freeze_zero_grad_and_requires_grad():
    net = Net()
    net.fc1.requires_grad_(False)
    assert net.num_parameters(trainable_only=True) == net.num_parameters() - 40
    F.mse_loss(net(tc.randn(6, 4, rng=0)), tc.zeros((6, 3))).backward()
    assert net.fc1.weight.grad is None and net.fc1.bias.grad is None
    assert net.fc2.weight.grad is not None and net.fc2.weight.grad.shape == (3, 8)
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    net.requires_grad_(True)
    assert all(p.requires_grad for p in net.parameters())


def test_train_eval_recursive_and_dropout_batchnorm_modes():
    net = nn.Sequential(nn.Linear(4, 4, rng=0), nn.Dropout(0.5, rng=0), nn.BatchNorm1d(4))
    assert all(m.training for m in net.modules())
    assert net.eval() is net and not any(m.training for m in net.modules())
    x = tc.randn(16, 4, rng=1)
    y1, y2 = net(x).numpy(), net(x).numpy()
    np.testing.assert_array_equal(y1, y2)  # eval: deterministic
    net.train()
    assert all(m.training for m in net.modules())
    d = net[1]
    z = d(tc.ones((200, 50))).numpy()
    assert set(np.unique(z)) <= {0.0, 2.0}
    assert 0.4 < (z == 0).mean() < 0.6


def test_batchnorm_running_stats_train_vs_eval():
    bn = nn.BatchNorm1d(3, momentum=0.1)
    rng = np.random.default_rng(0)
    xs = rng.normal(2.0, 3.0, (8, 3)).astype(np.float32)
    y = bn(tc.tensor(xs)).numpy()
    np.testing.assert_allclose(y.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(y.var(0), 1, atol=1e-3)
    np.testing.assert_allclose(bn.running_mean.numpy(), 0.1 * xs.mean(0), rtol=1e-5)
    np.testing.assert_allclose(bn.running_var.numpy(), 0.9 + 0.1 * xs.var(0, ddof=1), rtol=1e-5)
    assert int(bn.num_batches_tracked.item()) == 1
    bn.eval()
    rm, rv = bn.running_mean.numpy().copy(), bn.running_var.numpy().copy()
    ye = bn(tc.tensor(xs)).numpy()
    np.testing.assert_allclose(ye, (xs - rm) / np.sqrt(rv + 1e-5), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(bn.running_mean.numpy(), rm)  # eval leaves them alone
    cum = nn.BatchNorm1d(3, momentum=None)
    a, b = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    cum(tc.tensor(a)), cum(tc.tensor(b))
    np.testing.assert_allclose(cum.running_mean.numpy(), (a.mean(0) + b.mean(0)) / 2, rtol=1e-5)
    with pytest.raises(ValueError, match="more than one value per channel"):
        nn.BatchNorm1d(3)(tc.ones((1, 3)))
    with pytest.raises(ValueError, match=r"BatchNorm1d\(3\): x of shape \(N, 3\)"):
        nn.BatchNorm1d(3)(tc.ones((4, 5)))


def test_repr_shows_architecture_and_counts():
    net = nn.Sequential(nn.Linear(784, 256, rng=0), nn.ReLU(), nn.Linear(256, 10, rng=0))
    r = repr(net)
    assert "(0): Linear(784 -> 256, bias=True)  # 200,960 params" in r
    assert "(1): ReLU()" in r and "(2): Linear(256 -> 10, bias=True)  # 2,570 params" in r
    assert r.splitlines()[-1] == "Total parameters: 203,530 (trainable: 203,530)"
    net[0].requires_grad_(False)
    assert repr(net).splitlines()[-1] == "Total parameters: 203,530 (trainable: 2,570)"
    nested = repr(Net())
    assert "(fc1): Linear(4 -> 8, bias=True)  # 40 params" in nested


def test_containers():
    layers = [nn.Linear(2, 2, rng=i) for i in range(3)]
    seq = nn.Sequential(*layers)
    assert len(seq) == 3 and seq[1] is layers[1] and list(seq) == layers
    sub = seq[1:]
    assert isinstance(sub, nn.Sequential) and list(sub) == layers[1:]
    x = tc.randn(4, 2, rng=0)
    np.testing.assert_allclose(seq(x).numpy(), layers[2](layers[1](layers[0](x))).numpy())
    ml = nn.ModuleList(layers[:2])
    ml.append(layers[2])
    ml.insert(0, nn.Identity())
    assert len(ml) == 4 and ml[0].__class__ is nn.Identity and ml[-1] is layers[2]
    del ml[0]
    assert [n for n, _ in ml.named_children()] == ["0", "1", "2"] and ml[0] is layers[0]
    assert len(list(ml.parameters())) == 6
    md = nn.ModuleDict({"enc": nn.Linear(2, 3), "train": nn.Linear(3, 1)})
    assert "enc" in md and list(md.keys()) == ["enc", "train"]
    assert callable(md.train) and md.train() is md  # a key never shadows a method
    assert md["train"].out_features == 1
    md.pop("enc")
    assert list(md) == ["train"] and md.num_parameters() == 4
    od = nn.Sequential(dict(a=nn.Linear(2, 2), b=nn.ReLU()))
    assert [n for n, _ in od.named_children()] == ["a", "b"] and od.a is od[0]


def test_deepcopy_functional_call_and_dtype():
    net = Net()
    twin = copy.deepcopy(net)
    assert twin.fc1.weight is not net.fc1.weight
    assert twin._parameters["scale"] is twin.scale  # registry and attribute stay one object
    np.testing.assert_array_equal(twin.fc1.weight.numpy(), net.fc1.weight.numpy())
    lin = nn.Linear(3, 2, rng=0)
    w = tc.zeros((2, 3))
    b = tc.ones((2,))
    y = nn.functional_call(lin, {"weight": w, "bias": b}, tc.ones((4, 3)))
    np.testing.assert_array_equal(y.numpy(), np.ones((4, 2)))
    assert lin.weight.shape == (2, 3) and lin.weight is lin._parameters["weight"]
    assert not np.all(lin.weight.numpy() == 0)
    with pytest.raises(KeyError):
        nn.functional_call(lin, {"nope": w}, tc.ones((4, 3)))
    lin.double()
    assert lin.weight.dtype == np.float64 and lin(tc.ones((1, 3), dtype="float64")).dtype == \
        np.float64
    lin.float()
    assert lin.weight.dtype == np.float32


def test_parameter_repr_and_arithmetic():
    p = nn.Parameter(np.ones(2, np.float32))
    assert repr(p).startswith("Parameter(") and p.requires_grad
    q = p * 2
    assert type(q) is tc.Tensor
    frozen = nn.Parameter(np.ones(2), requires_grad=False)
    assert not frozen.requires_grad


def test_forward_hook_sees_and_replaces_outputs_and_is_removable():
    lin1, lin2 = nn.Linear(3, 4, rng=0), nn.Linear(4, 2, rng=1)
    model = nn.Sequential(lin1, nn.ReLU(), lin2)
    x = tc.tensor(np.arange(6.0, dtype=np.float32).reshape(2, 3))
    seen = []
    h1 = lin1.register_forward_hook(lambda m, args, out: seen.append((m, args[0], out.numpy())))
    y = model(x).numpy()
    assert len(seen) == 1 and seen[0][0] is lin1 and seen[0][1] is x
    np.testing.assert_allclose(seen[0][2], lin1(x).numpy())
    # a hook's non-None return value replaces the output, in registration order
    h2 = lin2.register_forward_hook(lambda m, args, out: out * 2.0)
    h3 = lin2.register_forward_hook(lambda m, args, out: out + 1.0)
    np.testing.assert_allclose(model(x).numpy(), 2 * y + 1, rtol=1e-6)
    h2.remove()
    h2.remove()  # a second remove does nothing
    np.testing.assert_allclose(model(x).numpy(), y + 1, rtol=1e-6)
    h3.remove()
    h1.remove()
    seen.clear()
    np.testing.assert_allclose(model(x).numpy(), y)
    assert seen == []
    with lin1.register_forward_hook(lambda m, a, o: seen.append(1)):
        model(x)
    model(x)
    assert seen == [1]
    with pytest.raises(TypeError, match="callable"):
        lin1.register_forward_hook("not a function")
