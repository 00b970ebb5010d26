"""The exported PyTorch optimizers against torch.optim and lion-pytorch: 100 steps on parameters of
mixed shapes, in float32 and bfloat16, with a `state_dict` round trip half way (the optimizer is
rebuilt from its saved state and training goes on). Needs the `torch` extra; skips without it."""
import copy

import pytest

import dsl
from dsl.export import export

torch = pytest.importorskip("torch")
lion_pytorch = pytest.importorskip("lion_pytorch")

SHAPES = [(3,), (2, 3), (4, 1, 2)]
STEPS = 100


def exported(name: str):
    """The exported class of built-in `name`, from the source as a user would save it."""
    ns = {}
    exec(compile(export(dsl.load(name), "pytorch"), f"<{name} export>", "exec"), ns)
    return next(v for v in ns.values() if isinstance(v, type) and issubclass(v, torch.optim.Optimizer)
                and v is not torch.optim.Optimizer)


def train(make, dtype, round_trip: bool) -> list:
    """Parameters after STEPS steps on a fixed sequence of gradients; with `round_trip`, the
    optimizer is rebuilt half way from a copy of its `state_dict`."""
    gen = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(s, generator=gen).to(dtype)) for s in SHAPES]
    opt = make(params)
    for t in range(STEPS):
        if round_trip and t == STEPS // 2:
            saved = copy.deepcopy(opt.state_dict())
            opt = make(params)
            opt.load_state_dict(saved)
        opt.zero_grad()
        for p in params:
            p.grad = (torch.randn(p.shape, generator=gen) + 0.1 * p.detach().float()).to(dtype)
        opt.step()
    return [p.detach().float() for p in params]


def max_diff(a, b) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


CASES = {
    "adamw": (lambda ps: exported("adamw")(ps, lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1),
              lambda ps: torch.optim.AdamW(ps, lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)),
    "momentum": (lambda ps: exported("momentum")(ps, lr=1e-2, beta=0.9),
                 lambda ps: torch.optim.SGD(ps, lr=1e-2, momentum=0.9)),
    "lion": (lambda ps: exported("lion")(ps, lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1),
             lambda ps: lion_pytorch.Lion(ps, lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)),
}


@pytest.mark.parametrize("name", CASES)
def test_exported_optimizer_matches_the_torch_reference_in_float32(name):
    ours, reference = CASES[name]
    got = train(ours, torch.float32, round_trip=True)
    assert max_diff(got, train(reference, torch.float32, round_trip=False)) <= 1e-5  # rounding only
    assert max_diff(train(ours, torch.float32, round_trip=False), got) == 0.0  # the round trip changes nothing


@pytest.mark.parametrize("name", CASES)
def test_exported_optimizer_is_as_accurate_as_the_torch_reference_in_bfloat16(name):
    """In bfloat16 an update of 1e-2 on a weight of size 1 is partly rounded away, so two correct
    implementations differ by what each rounds; each is judged by its distance from the float32
    run of the reference, which must be no more than 1.25 times the reference's own."""
    ours, reference = CASES[name]
    truth = train(reference, torch.float32, round_trip=False)
    got = train(ours, torch.bfloat16, round_trip=True)
    own = max_diff(train(reference, torch.bfloat16, round_trip=False), truth)
    assert max_diff(got, truth) <= 1.25 * own
    assert max_diff(train(ours, torch.bfloat16, round_trip=False), got) == 0.0


def test_bfloat16_adamw_does_not_diverge_where_b2_rounds_to_one():
    """b2 = 0.999 is 1.0 in bfloat16; the exported AdamW keeps it in float32 (as torch.optim does),
    so its first step is lr-sized, not lr / eps."""
    p = torch.nn.Parameter(torch.ones(3, dtype=torch.bfloat16))
    opt = exported("adamw")([p], lr=1e-3)
    p.grad = torch.full((3,), 0.5, dtype=torch.bfloat16)
    opt.step()
    assert float((p.detach().float() - 1.0).abs().max()) < 2e-3 and p.dtype == torch.bfloat16


def test_torch_conventions_param_groups_and_closure():
    Lion = exported("lion")
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    opt = Lion([{"params": [a]}, {"params": [b], "lr": 0.5, "weight_decay": 0.0}], lr=0.1, betas=(0.9, 0.99))
    assert opt.param_groups[0]["weight_decay"] == 0.01 and opt.param_groups[1]["lr"] == 0.5
    calls = []

    def closure():
        calls.append(1)
        opt.zero_grad()
        loss = (a.sum() - b.sum()) ** 2 + a.sum() + b.sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert calls == [1] and float(loss.detach()) == 4.0
    assert torch.allclose(a.detach(), torch.full((2,), 1 - 0.1 * (1 + 0.01)))  # its group: lr 0.1, wd 0.01
    assert torch.allclose(b.detach(), torch.full((2,), 1 - 0.5))  # its own: lr 0.5, no decay
    assert Lion.__name__ == "Lion" and exported("adamw").__name__ == "Adamw"


@pytest.mark.parametrize("name", ["amsgrad", "adan"])
def test_exported_optimizer_with_more_memory_slots_steps_as_the_program_does(name):
    """A 3- and a 4-slot program: its further slots are state entries of their own (kept through a
    `state_dict` round trip), and the steps are `dsl.execute.run`'s (float64 numpy) to rounding."""
    import numpy as np
    from dsl.execute import run
    p = dsl.load(name)
    got = train(lambda ps: exported(name)(ps, lr=1e-2), torch.float32, round_trip=True)
    opt = exported(name)([torch.nn.Parameter(torch.ones(2))], lr=1e-2)
    opt.param_groups[0]["params"][0].grad = torch.ones(2)
    opt.step()
    assert set(next(iter(opt.state.values()))) == {"step", *dsl.state_slots(p)}
    # the same gradients (train's generator) through the program itself
    gen = torch.Generator().manual_seed(0)
    ws = [torch.randn(s, generator=gen).double().numpy() for s in SHAPES]
    mem = [[np.zeros(s) for _ in p.memory] for s in SHAPES]
    for t in range(STEPS):
        for i, w in enumerate(ws):
            g = (torch.randn(SHAPES[i], generator=gen) + 0.1 * torch.from_numpy(w).float()).double().numpy()
            u, *mem[i] = run(p, np, w, g, mem[i][0], mem[i][1], 1e-2, float(t + 1), extra=mem[i][2:])
            ws[i] = w - u
    assert max_diff(got, [torch.from_numpy(w).float() for w in ws]) <= 1e-5
