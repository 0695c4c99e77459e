"""Gradient optimizers: 20-step parity with torch.optim (float64, 1e-10 relative) or with a
straightforward NumPy transcription of Keras 3's formula, state round trips, configs, errors.

How fusenet (Keras 3) hyper-parameters map onto torch.optim
-----------------------------------------------------------
- SGD(lr, momentum, nesterov) == torch SGD(lr, momentum, nesterov, dampening=0) for a constant
  lr (Keras keeps ``m = -lr * buf``). With a schedule the two differ (Keras puts lr inside the
  velocity), so that case is checked against Keras's formula.
- Keras puts Adam's epsilon on ``sqrt(v)`` before the bias correction ("epsilon hat"); torch on
  ``sqrt(v / (1 - beta_2**t))``. They agree at epsilon = 0: the torch checks of Adam, AdamW
  (and Muon's Adam part) use epsilon = 0; epsilon > 0 is checked against Keras's formula.
- Adamax: Keras ``u = max(beta_2 u, |g|)``, divides by ``u + eps``; torch ``max(beta_2 u, |g| + eps)``:
  torch check at epsilon = 0, Keras formula otherwise.
- RMSprop: Keras ``sqrt(v + eps)`` (``sqrt(v - a**2 + eps)`` centered), torch ``sqrt(v) + eps``; torch's
  ``alpha`` is Keras's ``rho``; Keras's momentum buffer holds ``lr * g / ...`` where torch's holds
  ``g / ...`` (same with a constant lr). torch check at epsilon = 0, Keras formula otherwise.
- Adagrad: Keras ``sqrt(acc + eps)``, torch ``sqrt(acc) + eps``: torch at epsilon = 0 (with
  ``initial_accumulator_value`` mapped 1:1), Keras formula otherwise.
- Adadelta: identical formulas (epsilon inside both roots); torch ``rho``, ``eps``, ``lr`` 1:1.
- Nadam == torch NAdam(momentum_decay=1.0): torch's ``0.96 ** (t * momentum_decay)`` is Keras's ``0.96 ** t``.
- Weight decay is Keras 3's decoupled ``p -= lr * wd * p`` before the update for every optimizer:
  torch AdamW(weight_decay) / Adam, NAdam, RAdam(decoupled_weight_decay=True); for the others the
  test multiplies torch's parameters by ``1 - lr * wd`` before each torch step.
- Clipping follows Keras (``g * c / max(||g||, c)``; torch's clip_grad_norm_ adds 1e-6): the test
  clips the gradients with Keras's formula before handing them to torch.
- RAdam, Rprop and ASGD have no Keras version: they follow torch (names: beta_1/beta_2/epsilon for
  betas/eps; Rprop etas and step_sizes; ASGD lambd, alpha, t0).
- Lion, Ftrl, Adafactor and Muon (Keras's formulation; torch's Adafactor and Muon differ) are checked
  against NumPy transcriptions of Keras's code below.
"""

import copy
import json

import numpy as np
import pytest

from fusenet import layers, optimizers
from fusenet.optimizers import schedules
from tests.parity import assert_close, requires_torch, torch

STEPS = 20
SHAPES = [(4, 3), (3,), (2, 3, 2)]
MUON_SHAPES = [(5, 3), (3, 6), (4,), (2, 2, 3)]


# ---------------------------------------------------------------- helpers
def make_problem(rng, shapes=SHAPES, steps=STEPS, zeros=False, dtype=np.float64):
    params = [rng.normal(size=s).astype(dtype) for s in shapes]
    grads = [[rng.normal(size=s).astype(dtype) for s in shapes] for _ in range(steps)]
    if zeros:  # exact zeros exercise the "sign == 0" branches (Rprop)
        for step in grads[::3]:
            for g in step:
                g.ravel()[::2] = 0.0
    return params, grads


def keras_clip(grads, clipnorm=None, global_clipnorm=None, clipvalue=None):
    """Keras 3's BaseOptimizer._clip_gradients, written out."""
    if clipnorm:
        return [g * clipnorm / max(np.sqrt(np.sum(np.square(g))), clipnorm) for g in grads]
    if global_clipnorm:
        norm = np.sqrt(sum(np.sum(np.square(g)) for g in grads))
        scale = global_clipnorm * min(1.0 / norm, 1.0 / global_clipnorm)
        return [g * scale for g in grads]
    if clipvalue:
        return [np.clip(g, -clipvalue, clipvalue) for g in grads]
    return grads


def run_fusenet(opt, params0, grads):
    params = [p.copy() for p in params0]
    history = []
    for step in grads:
        opt.apply_gradients(list(zip(step, params)))
        history.append([p.copy() for p in params])
    return history


@pytest.fixture
def torch_float64():
    """torch.optim keeps scalar state (ASGD's eta and mu, NAdam's mu_product) in the default dtype."""
    if torch is None:
        pytest.skip("torch is not installed")
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def run_torch(make_opt, params0, grads, clip=None, decay=None, lr_fn=None):
    """``make_opt(params)`` a torch optimizer; ``decay=(lr, wd)``: decoupled decay before each step;
    ``lr_fn(step)`` sets the learning rate of every step."""
    params = [torch.tensor(p.copy(), requires_grad=True) for p in params0]
    opt = make_opt(params)
    history = []
    for i, step in enumerate(grads):
        step = keras_clip(step, **(clip or {}))
        if lr_fn is not None:
            for group in opt.param_groups:
                group["lr"] = lr_fn(i)
        with torch.no_grad():
            if decay is not None:
                lr, wd = decay
                for p in params:
                    p.sub_(p * (lr * wd))
        for p, g in zip(params, step):
            p.grad = torch.tensor(g)
        opt.step()
        history.append([p.detach().numpy().copy() for p in params])
    return history


def assert_histories(ours, theirs, what):
    assert len(ours) == len(theirs)
    for i, (a, b) in enumerate(zip(ours, theirs)):
        for j, (x, y) in enumerate(zip(a, b)):
            assert_close(x, y, np.float64, f"{what}: step {i + 1}, parameter {j}")


# ---------------------------------------------------------------- parity with torch.optim
def _t():
    """torch.optim, looked up when a case runs (the module imports without torch)."""
    return torch.optim


TORCH_CASES = [
    # id, fusenet optimizer, torch factory, extra kwargs for run_torch
    ("sgd", lambda: optimizers.SGD(0.1), lambda p: _t().SGD(p, lr=0.1), {}),
    ("sgd-momentum", lambda: optimizers.SGD(0.05, momentum=0.9), lambda p: _t().SGD(p, lr=0.05, momentum=0.9), {}),
    ("sgd-nesterov", lambda: optimizers.SGD(0.05, momentum=0.8, nesterov=True),
     lambda p: _t().SGD(p, lr=0.05, momentum=0.8, nesterov=True), {}),
    ("sgd-wd-clipnorm", lambda: optimizers.SGD(0.05, momentum=0.9, weight_decay=0.1, clipnorm=1.0),
     lambda p: _t().SGD(p, lr=0.05, momentum=0.9), {"clip": {"clipnorm": 1.0}, "decay": (0.05, 0.1)}),
    ("sgd-clipvalue", lambda: optimizers.SGD(0.1, clipvalue=0.5), lambda p: _t().SGD(p, lr=0.1),
     {"clip": {"clipvalue": 0.5}}),
    ("adam-eps0", lambda: optimizers.Adam(0.01, epsilon=0.0), lambda p: _t().Adam(p, lr=0.01, eps=0.0), {}),
    ("adam-amsgrad", lambda: optimizers.Adam(0.01, beta_1=0.8, beta_2=0.95, epsilon=0.0, amsgrad=True),
     lambda p: _t().Adam(p, lr=0.01, betas=(0.8, 0.95), eps=0.0, amsgrad=True), {}),
    ("adam-global-clipnorm", lambda: optimizers.Adam(0.01, epsilon=0.0, global_clipnorm=2.0),
     lambda p: _t().Adam(p, lr=0.01, eps=0.0), {"clip": {"global_clipnorm": 2.0}}),
    ("adam-wd", lambda: optimizers.Adam(0.01, epsilon=0.0, weight_decay=0.05),
     lambda p: _t().AdamW(p, lr=0.01, eps=0.0, weight_decay=0.05), {}),
    ("adamw", lambda: optimizers.AdamW(0.01, epsilon=0.0),
     lambda p: _t().AdamW(p, lr=0.01, eps=0.0, weight_decay=0.004), {}),
    ("adamw-amsgrad-clipvalue", lambda: optimizers.AdamW(0.02, weight_decay=0.1, epsilon=0.0, amsgrad=True,
                                                         clipvalue=0.7),
     lambda p: _t().AdamW(p, lr=0.02, eps=0.0, weight_decay=0.1, amsgrad=True), {"clip": {"clipvalue": 0.7}}),
    ("nadam", lambda: optimizers.Nadam(0.01), lambda p: _t().NAdam(p, lr=0.01, eps=1e-7, momentum_decay=1.0), {}),
    ("nadam-wd-clipnorm", lambda: optimizers.Nadam(0.01, beta_1=0.85, weight_decay=0.05, clipnorm=1.0),
     lambda p: _t().NAdam(p, lr=0.01, betas=(0.85, 0.999), eps=1e-7, momentum_decay=1.0, weight_decay=0.05,
                          decoupled_weight_decay=True), {"clip": {"clipnorm": 1.0}}),
    ("radam", lambda: optimizers.RAdam(0.01), lambda p: _t().RAdam(p, lr=0.01), {}),
    ("radam-fast-rectification", lambda: optimizers.RAdam(0.01, beta_2=0.9, weight_decay=0.1),
     lambda p: _t().RAdam(p, lr=0.01, betas=(0.9, 0.9), weight_decay=0.1, decoupled_weight_decay=True), {}),
    ("adamax-eps0", lambda: optimizers.Adamax(0.01, epsilon=0.0), lambda p: _t().Adamax(p, lr=0.01, eps=0.0), {}),
    ("adamax-wd", lambda: optimizers.Adamax(0.01, beta_2=0.9, epsilon=0.0, weight_decay=0.2),
     lambda p: _t().Adamax(p, lr=0.01, betas=(0.9, 0.9), eps=0.0), {"decay": (0.01, 0.2)}),
    ("rmsprop-eps0", lambda: optimizers.RMSprop(0.01, epsilon=0.0),
     lambda p: _t().RMSprop(p, lr=0.01, alpha=0.9, eps=0.0), {}),
    ("rmsprop-centered-momentum", lambda: optimizers.RMSprop(0.01, rho=0.8, momentum=0.9, epsilon=0.0, centered=True),
     lambda p: _t().RMSprop(p, lr=0.01, alpha=0.8, eps=0.0, momentum=0.9, centered=True), {}),
    ("rmsprop-momentum-global-clipnorm", lambda: optimizers.RMSprop(0.01, momentum=0.5, epsilon=0.0,
                                                                    global_clipnorm=1.5),
     lambda p: _t().RMSprop(p, lr=0.01, alpha=0.9, eps=0.0, momentum=0.5), {"clip": {"global_clipnorm": 1.5}}),
    ("adagrad-eps0", lambda: optimizers.Adagrad(0.1, epsilon=0.0),
     lambda p: _t().Adagrad(p, lr=0.1, eps=0.0, initial_accumulator_value=0.1), {}),
    ("adagrad-zero-init-wd", lambda: optimizers.Adagrad(0.1, initial_accumulator_value=0.0, epsilon=0.0,
                                                        weight_decay=0.05),
     lambda p: _t().Adagrad(p, lr=0.1, eps=0.0), {"decay": (0.1, 0.05)}),
    ("adadelta", lambda: optimizers.Adadelta(1.0, rho=0.9, epsilon=1e-6),
     lambda p: _t().Adadelta(p, lr=1.0, rho=0.9, eps=1e-6), {}),
    ("adadelta-default-eps-clipnorm", lambda: optimizers.Adadelta(0.5, clipnorm=1.0),
     lambda p: _t().Adadelta(p, lr=0.5, rho=0.95, eps=1e-7), {"clip": {"clipnorm": 1.0}}),
    ("rprop", lambda: optimizers.Rprop(0.01), lambda p: _t().Rprop(p, lr=0.01), {}),
    ("rprop-tight", lambda: optimizers.Rprop(0.05, etas=(0.3, 1.5), step_sizes=(1e-3, 0.08)),
     lambda p: _t().Rprop(p, lr=0.05, etas=(0.3, 1.5), step_sizes=(1e-3, 0.08)), {}),
    ("asgd", lambda: optimizers.ASGD(0.05), lambda p: _t().ASGD(p, lr=0.05), {}),
    ("asgd-averaging", lambda: optimizers.ASGD(0.05, lambd=0.01, alpha=0.5, t0=5),
     lambda p: _t().ASGD(p, lr=0.05, lambd=0.01, alpha=0.5, t0=5), {}),
    ("asgd-wd", lambda: optimizers.ASGD(0.05, t0=3, weight_decay=0.1),
     lambda p: _t().ASGD(p, lr=0.05, t0=3), {"decay": (0.05, 0.1)}),
]


@requires_torch
@pytest.mark.parametrize("case", TORCH_CASES, ids=[c[0] for c in TORCH_CASES])
def test_parity_with_torch(case, rng, torch_float64):
    name, make, make_torch, kwargs = case
    params0, grads = make_problem(rng, zeros=name.startswith("rprop"))
    opt = make()
    ours = run_fusenet(opt, params0, grads)
    theirs = run_torch(make_torch, params0, grads, **kwargs)
    assert_histories(ours, theirs, name)
    assert opt.iterations == STEPS


@requires_torch
def test_asgd_averages_match_torch(rng, torch_float64):
    params0, grads = make_problem(rng)
    opt = optimizers.ASGD(0.05, lambd=0.01, t0=4)
    run_fusenet(opt, params0, grads)
    tparams = [torch.tensor(p.copy(), requires_grad=True) for p in params0]
    topt = torch.optim.ASGD(tparams, lr=0.05, lambd=0.01, t0=4)
    for step in grads:
        for p, g in zip(tparams, step):
            p.grad = torch.tensor(g)
        topt.step()
    for ours, p in zip(opt.averaged_params(), tparams):
        assert_close(ours, topt.state[p]["ax"], np.float64, "ASGD average")


@requires_torch
@pytest.mark.parametrize("schedule", [
    schedules.ExponentialDecay(0.02, decay_steps=4, decay_rate=0.7),
    schedules.CosineDecay(0.0, decay_steps=12, warmup_target=0.03, warmup_steps=5, alpha=0.1),
    schedules.PiecewiseConstantDecay([3, 9], [0.03, 0.01, 0.002]),
], ids=["exponential", "cosine-warmup", "piecewise"])
def test_adam_with_a_schedule_matches_torch(schedule, rng, torch_float64):
    """The schedule is called with iterations = 0, 1, ...: torch gets the same lr set by hand."""
    params0, grads = make_problem(rng)
    ours = run_fusenet(optimizers.Adam(schedule, epsilon=0.0), params0, grads)
    theirs = run_torch(lambda p: torch.optim.Adam(p, eps=0.0), params0, grads, lr_fn=schedule)
    assert_histories(ours, theirs, f"Adam with {type(schedule).__name__}")


@requires_torch
def test_radam_weight_decay_follows_the_schedule(rng, torch_float64):
    """Decoupled decay uses the learning rate of the step (torch: the group's lr, set per step)."""
    schedule = schedules.InverseTimeDecay(0.02, decay_steps=2, decay_rate=0.5)
    params0, grads = make_problem(rng)
    ours = run_fusenet(optimizers.RAdam(schedule, weight_decay=0.3), params0, grads)
    theirs = run_torch(lambda p: torch.optim.RAdam(p, weight_decay=0.3, decoupled_weight_decay=True),
                       params0, grads, lr_fn=schedule)
    assert_histories(ours, theirs, "RAdam with InverseTimeDecay and weight decay")


# ---------------------------------------------------------------- Keras formulas written out
# Each reference is a direct, allocation-happy transcription of Keras 3's update_step:
# ``step(state, g, p, lr, t) -> new p`` where ``state`` is a dict per parameter.
def ref_adam(beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False):
    def step(s, g, p, lr, t):
        s.setdefault("m", np.zeros_like(p))
        s.setdefault("v", np.zeros_like(p))
        s.setdefault("vh", np.zeros_like(p))
        alpha = lr * np.sqrt(1 - beta_2**t) / (1 - beta_1**t)
        s["m"] = s["m"] + (g - s["m"]) * (1 - beta_1)
        s["v"] = s["v"] + (g * g - s["v"]) * (1 - beta_2)
        v = s["v"]
        if amsgrad:
            s["vh"] = np.maximum(s["vh"], s["v"])
            v = s["vh"]
        return p - s["m"] * alpha / (np.sqrt(v) + epsilon)
    return step


def ref_adamax(beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    def step(s, g, p, lr, t):
        m = s.get("m", np.zeros_like(p))
        u = s.get("u", np.zeros_like(p))
        s["m"] = m + (g - m) * (1 - beta_1)
        s["u"] = np.maximum(beta_2 * u, np.abs(g))
        return p - lr * s["m"] / ((1 - beta_1**t) * (s["u"] + epsilon))
    return step


def ref_rmsprop(rho=0.9, momentum=0.0, epsilon=1e-7, centered=False):
    def step(s, g, p, lr, t):
        v = rho * s.get("v", np.zeros_like(p)) + (1 - rho) * g**2
        s["v"] = v
        if centered:
            s["a"] = rho * s.get("a", np.zeros_like(p)) + (1 - rho) * g
            denominator = v - s["a"] ** 2 + epsilon
        else:
            denominator = v + epsilon
        increment = lr * g / np.sqrt(denominator)
        if momentum > 0:
            s["mom"] = momentum * s.get("mom", np.zeros_like(p)) + increment
            return p - s["mom"]
        return p - increment
    return step


def ref_adagrad(initial_accumulator_value=0.1, epsilon=1e-7):
    def step(s, g, p, lr, t):
        s["acc"] = s.get("acc", np.full_like(p, initial_accumulator_value)) + g**2
        return p - lr * g / np.sqrt(s["acc"] + epsilon)
    return step


def ref_sgd(momentum=0.0, nesterov=False):
    def step(s, g, p, lr, t):
        if momentum == 0:
            return p - g * lr
        s["m"] = s.get("m", np.zeros_like(p)) * momentum - g * lr
        if nesterov:
            return p + (s["m"] * momentum - g * lr)
        return p + s["m"]
    return step


def ref_lion(beta_1=0.9, beta_2=0.99):
    def step(s, g, p, lr, t):
        m = s.get("m", np.zeros_like(p))
        new_p = p - lr * np.sign(m * beta_1 + g * (1.0 - beta_1))
        s["m"] = m * beta_2 + g * (1.0 - beta_2)
        return new_p
    return step


def ref_ftrl(learning_rate_power=-0.5, initial_accumulator_value=0.1, l1=0.0, l2=0.0, l2_shrinkage=0.0, beta=0.0):
    def step(s, g, p, lr, t):
        accum = s.get("accum", np.full_like(p, initial_accumulator_value))
        linear = s.get("linear", np.zeros_like(p))
        l2_reg = l2 + beta / (2.0 * lr)
        grad_to_use = g + 2 * l2_shrinkage * p
        new_accum = accum + g**2
        linear = linear + (grad_to_use - (new_accum ** (-learning_rate_power) - accum ** (-learning_rate_power)) / lr * p)
        quadratic = new_accum ** (-learning_rate_power) / lr + 2 * l2_reg
        linear_clipped = np.clip(linear, -l1, l1)
        s["accum"], s["linear"] = new_accum, linear
        return (linear_clipped - linear) / quadratic
    return step


def ref_adafactor(beta_2_decay=-0.8, epsilon_1=1e-30, epsilon_2=1e-3, clip_threshold=1.0):
    def rms(x):
        return np.sqrt(np.mean(np.square(x)))

    def step(s, g, p, lr, t):
        local_step = float(t)
        lr = min(lr, 1 / np.sqrt(local_step))  # relative_step with a constant learning rate
        rho_t = min(lr, 1 / np.sqrt(local_step))
        alpha_t = max(epsilon_2, rms(p)) * rho_t
        regulated_grad_square = np.square(g) + epsilon_1
        beta_2_t = 1 - local_step**beta_2_decay
        if p.ndim >= 2:
            r = s.get("r", np.zeros(p.shape[:-1]))
            c = s.get("c", np.zeros(p.shape[:-2] + p.shape[-1:]))
            s["r"] = beta_2_t * r + (1 - beta_2_t) * np.mean(regulated_grad_square, axis=-1)
            s["c"] = beta_2_t * c + (1 - beta_2_t) * np.mean(regulated_grad_square, axis=-2)
            v = np.expand_dims(s["r"] / np.mean(s["r"], axis=-1, keepdims=True), -1) * np.expand_dims(s["c"], -2)
        else:
            v = beta_2_t * s.get("v", np.zeros_like(p)) + (1 - beta_2_t) * regulated_grad_square
            s["v"] = v
        u_t = g / np.sqrt(v)
        u_t_hat = u_t / max(1.0, rms(u_t) / clip_threshold)
        return p - alpha_t * u_t_hat
    return step


def ref_muon(adam_beta_1=0.9, adam_beta_2=0.999, epsilon=1e-7, momentum=0.95, ns_steps=5, nesterov=True,
             rms_rate=0.2, adam_lr_ratio=1.0):
    a, b, c = 3.4445, -4.7750, 2.0315

    def newton_schulz5(x):
        transposed = x.shape[0] > x.shape[1]
        if transposed:
            x = x.T
        x = x / (np.linalg.norm(x) + 1e-7)
        for _ in range(ns_steps):
            temp_a = x @ x.T
            temp_b = b * temp_a + c * temp_a @ temp_a
            x = a * x + temp_b @ x
        return x.T if transposed else x

    def step(s, g, p, lr, t):
        m = s.get("m", np.zeros_like(p))
        if p.ndim != 2:  # Adam
            lr = lr * adam_lr_ratio
            alpha = lr * np.sqrt(1 - adam_beta_2**t) / (1 - adam_beta_1**t)
            s["m"] = m + (g - m) * (1 - adam_beta_1)
            s["v"] = s.get("v", np.zeros_like(p)) + (g * g - s.get("v", np.zeros_like(p))) * (1 - adam_beta_2)
            return p - s["m"] * alpha / (np.sqrt(s["v"]) + epsilon)
        s["m"] = m + (g + m * (momentum - 1))
        u = g + momentum * s["m"] if nesterov else s["m"]
        update = lr * newton_schulz5(u)
        if rms_rate is not None:
            update = update * np.sqrt(max(p.shape[0], p.shape[1])) * rms_rate
        return p - update
    return step


def run_reference(step, params0, grads, lr_fn, weight_decay=None, clip=None, decay_fn=None):
    """Keras's BaseOptimizer.apply around a per-parameter ``step``: lr from the iteration,
    clip, decoupled decay ``p - p * wd * lr``, update. ``decay_fn(i)`` gives per-parameter decay."""
    params = [p.copy() for p in params0]
    states = [{} for _ in params]
    history = []
    for it, step_grads in enumerate(grads):
        lr = lr_fn(it)
        step_grads = keras_clip(step_grads, **(clip or {}))
        for i, (g, p) in enumerate(zip(step_grads, params)):
            wd = decay_fn(i) if decay_fn is not None else weight_decay
            if wd is not None:
                p = p - p * wd * lr
            params[i] = step(states[i], g, p, lr, it + 1)
        history.append([p.copy() for p in params])
    return history


def const(lr):
    return lambda step: lr


KERAS_CASES = [
    ("adam-epsilon", lambda: optimizers.Adam(0.01, epsilon=1e-3), ref_adam(epsilon=1e-3), const(0.01), {}),
    ("adam-amsgrad-epsilon", lambda: optimizers.Adam(0.01, epsilon=1e-2, amsgrad=True, clipnorm=1.0),
     ref_adam(epsilon=1e-2, amsgrad=True), const(0.01), {"clip": {"clipnorm": 1.0}}),
    ("adamw-epsilon", lambda: optimizers.AdamW(0.01, weight_decay=0.1), ref_adam(), const(0.01),
     {"weight_decay": 0.1}),
    ("adamax-epsilon", lambda: optimizers.Adamax(0.01, epsilon=1e-2), ref_adamax(epsilon=1e-2), const(0.01), {}),
    ("rmsprop-epsilon", lambda: optimizers.RMSprop(0.01, epsilon=1e-3), ref_rmsprop(epsilon=1e-3), const(0.01), {}),
    ("rmsprop-centered-momentum-schedule",
     lambda: optimizers.RMSprop(schedules.ExponentialDecay(0.02, 3, 0.5), rho=0.8, momentum=0.7, epsilon=1e-3,
                                centered=True),
     ref_rmsprop(rho=0.8, momentum=0.7, epsilon=1e-3, centered=True), schedules.ExponentialDecay(0.02, 3, 0.5), {}),
    ("adagrad-epsilon", lambda: optimizers.Adagrad(0.1, epsilon=1e-2), ref_adagrad(epsilon=1e-2), const(0.1), {}),
    ("sgd-momentum-schedule", lambda: optimizers.SGD(schedules.PolynomialDecay(0.1, 10, 0.01, power=2.0),
                                                     momentum=0.9),
     ref_sgd(momentum=0.9), schedules.PolynomialDecay(0.1, 10, 0.01, power=2.0), {}),
    ("sgd-nesterov-schedule-wd", lambda: optimizers.SGD(schedules.CosineDecay(0.1, 15), momentum=0.8, nesterov=True,
                                                        weight_decay=0.2),
     ref_sgd(momentum=0.8, nesterov=True), schedules.CosineDecay(0.1, 15), {"weight_decay": 0.2}),
    ("lion", lambda: optimizers.Lion(0.01), ref_lion(), const(0.01), {}),
    ("lion-betas-wd-global-clipnorm", lambda: optimizers.Lion(0.01, beta_1=0.5, beta_2=0.9, weight_decay=0.3,
                                                             global_clipnorm=1.0),
     ref_lion(0.5, 0.9), const(0.01), {"weight_decay": 0.3, "clip": {"global_clipnorm": 1.0}}),
    ("ftrl", lambda: optimizers.Ftrl(0.1), ref_ftrl(), const(0.1), {}),
    ("ftrl-regularized", lambda: optimizers.Ftrl(0.2, learning_rate_power=-0.7, initial_accumulator_value=0.5,
                                                 l1_regularization_strength=0.05, l2_regularization_strength=0.1,
                                                 l2_shrinkage_regularization_strength=0.02, beta=0.3),
     ref_ftrl(-0.7, 0.5, 0.05, 0.1, 0.02, 0.3), const(0.2), {}),
    ("ftrl-fixed-rate-schedule", lambda: optimizers.Ftrl(schedules.InverseTimeDecay(0.3, 5, 1.0),
                                                         learning_rate_power=0.0, l1_regularization_strength=0.01),
     ref_ftrl(0.0, 0.1, 0.01), schedules.InverseTimeDecay(0.3, 5, 1.0), {}),
    ("adafactor", lambda: optimizers.Adafactor(0.01), ref_adafactor(), const(0.01), {}),
    ("adafactor-options", lambda: optimizers.Adafactor(0.5, beta_2_decay=-0.5, epsilon_2=1e-2, clip_threshold=0.5,
                                                       weight_decay=0.1),
     ref_adafactor(-0.5, 1e-30, 1e-2, 0.5), const(0.5), {"weight_decay": 0.1}),
]


@pytest.mark.parametrize("case", KERAS_CASES, ids=[c[0] for c in KERAS_CASES])
def test_matches_keras_formula(case, rng):
    name, make, ref, lr_fn, kwargs = case
    params0, grads = make_problem(rng)
    ours = run_fusenet(make(), params0, grads)
    theirs = run_reference(ref, params0, grads, lr_fn, **kwargs)
    assert_histories(ours, theirs, name)


MUON_CASES = [
    ("default", {}, {}),
    ("plain-momentum-no-rms", {"nesterov": False, "rms_rate": None, "momentum": 0.9},
     {"nesterov": False, "rms_rate": None, "momentum": 0.9}),
    ("adam-ratio-steps-clip", {"adam_lr_ratio": 0.1, "ns_steps": 3, "epsilon": 1e-3, "clipnorm": 1.0},
     {"adam_lr_ratio": 0.1, "ns_steps": 3, "epsilon": 1e-3}),
]


@pytest.mark.parametrize("case", MUON_CASES, ids=[c[0] for c in MUON_CASES])
def test_muon_matches_keras_formula(case, rng):
    """Muon on 2-D kernels (tall and wide), Adam on a bias and a 3-D kernel; Muon's weight decay
    for the 2-D ones and adam_weight_decay for the others, both times the learning rate."""
    name, kwargs, ref_kwargs = case
    params0, grads = make_problem(rng, shapes=MUON_SHAPES)
    opt = optimizers.Muon(0.02, weight_decay=0.1, adam_weight_decay=0.05, **kwargs)
    ours = run_fusenet(opt, params0, grads)
    clip = {"clipnorm": kwargs["clipnorm"]} if "clipnorm" in kwargs else None
    theirs = run_reference(ref_muon(**ref_kwargs), params0, grads, const(0.02), clip=clip,
                           decay_fn=lambda i: 0.1 if len(MUON_SHAPES[i]) == 2 else 0.05)
    assert_histories(ours, theirs, f"Muon {name}")


def test_newton_schulz_orthogonalises():
    """Five quintic steps push every singular value of a well-conditioned matrix towards (0.68, 1.13)."""
    rng = np.random.default_rng(0)
    for shape in [(6, 4), (4, 6)]:
        x = optimizers.newton_schulz(rng.normal(size=shape), 5)
        assert x.shape == shape
        s = np.linalg.svd(x, compute_uv=False)
        assert np.all(s > 0.6) and np.all(s < 1.2)


def test_muon_names_decide_the_step(rng):
    """Through apply(layers), embeddings and exclude_layers take the Adam step even when 2-D."""
    dense = layers.Dense(3, name="hidden", dtype="float64")
    head = layers.Dense(2, name="head", dtype="float64")
    emb = layers.Dense(4, name="embedding_proj", dtype="float64")
    x = rng.normal(size=(5, 4))
    for layer in (dense, head, emb):
        y = layer(x[:, :4] if layer is not head else x[:, :3], training=True)
        layer.backward(np.ones_like(y))
    opt = optimizers.Muon(exclude_layers=["head"])
    opt.apply([dense, head, emb])
    kinds = {i: "velocity" in opt._slots[i] for i in range(6)}
    # order: hidden kernel, hidden bias, head kernel, head bias, embedding kernel, embedding bias
    assert kinds == {0: False, 1: True, 2: True, 3: True, 4: True, 5: True}
    assert optimizers.Muon().uses_adam((3, 4)) is False
    assert optimizers.Muon(exclude_embeddings=False).uses_adam((3, 4), "embedding/embeddings") is False


# ---------------------------------------------------------------- behaviour shared by all
ALL_OPTIMIZERS = {
    "sgd": lambda: optimizers.SGD(0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
    "adam": lambda: optimizers.Adam(0.01, amsgrad=True, clipnorm=1.0),
    "adamw": lambda: optimizers.AdamW(0.01),
    "nadam": lambda: optimizers.Nadam(0.01, global_clipnorm=2.0),
    "radam": lambda: optimizers.RAdam(0.01, beta_2=0.9),
    "adamax": lambda: optimizers.Adamax(0.01),
    "rmsprop": lambda: optimizers.RMSprop(0.01, momentum=0.5, centered=True),
    "rprop": lambda: optimizers.Rprop(0.01),
    "adagrad": lambda: optimizers.Adagrad(0.1),
    "adadelta": lambda: optimizers.Adadelta(1.0),
    "adafactor": lambda: optimizers.Adafactor(0.01),
    "lion": lambda: optimizers.Lion(0.01, weight_decay=0.1),
    "ftrl": lambda: optimizers.Ftrl(0.1, l1_regularization_strength=0.01),
    "asgd": lambda: optimizers.ASGD(0.05, t0=5),
    "muon": lambda: optimizers.Muon(0.01),
}


@pytest.mark.parametrize("name", sorted(ALL_OPTIMIZERS))
def test_state_round_trip_continues_bit_identically(name, rng):
    """10 steps, get_state -> JSON (scalars) + arrays -> fresh optimizer from the config -> 10 more
    steps gives exactly the parameters of 20 uninterrupted steps."""
    shapes = MUON_SHAPES if name == "muon" else SHAPES
    params0, grads = make_problem(rng, shapes=shapes)
    reference = run_fusenet(ALL_OPTIMIZERS[name](), params0, grads)[-1]

    first = ALL_OPTIMIZERS[name]()
    params = [p.copy() for p in params0]
    for step in grads[:10]:
        first.apply_gradients(list(zip(step, params)))
    state = first.get_state()
    arrays = state.pop("slots")
    state = json.loads(json.dumps(state))  # everything but the slots is JSON-safe
    state["slots"] = [np.array(a) for a in arrays]
    config = json.loads(json.dumps(first.get_config()))

    second = type(first).from_config(config)
    second.set_state(state)
    assert second.iterations == 10
    for step in grads[10:]:
        second.apply_gradients(list(zip(step, params)))
    for p, q in zip(params, reference):
        assert np.array_equal(p, q), f"{name}: continuation after set_state differs"
    # set_state on an optimizer that is already built restores in place, too
    first.set_state(second.get_state())
    assert first.iterations == 20
    for a, b in zip(first.get_state()["slots"], second.get_state()["slots"]):
        assert np.array_equal(a, b)


def test_state_keeps_a_changed_learning_rate(rng):
    """ReduceLROnPlateau sets a float learning rate; the state carries it."""
    params0, grads = make_problem(rng)
    opt = optimizers.Adam(0.01)
    run_fusenet(opt, params0, grads[:2])
    opt.learning_rate = 0.001
    state = opt.get_state()
    assert state["learning_rate"] == 0.001 and state["iterations"] == 2
    fresh = optimizers.Adam(0.01)
    fresh.set_state(state)
    assert fresh.learning_rate == 0.001
    assert fresh.get_state()["slot_names"] == state["slot_names"]  # pending state round-trips too


def test_state_before_any_update_and_with_a_schedule():
    opt = optimizers.SGD(schedules.ExponentialDecay(0.1, 10, 0.5))
    state = opt.get_state()
    assert state == {"class_name": "SGD", "iterations": 0, "learning_rate": None, "param_shapes": None,
                     "slot_names": [], "slots": []}
    opt.set_state({**state, "iterations": 10})
    assert opt.learning_rate == pytest.approx(0.05)
    built = optimizers.Adam()
    built.apply_gradients([(np.ones(2), np.ones(2))])
    built.set_state(optimizers.Adam().get_state())  # back to a fresh optimizer
    assert not built.built and built.iterations == 0
    p = np.zeros(3)
    built.apply_gradients([(np.ones(3), p)])
    assert built.get_state()["param_shapes"] == [[3]]


@pytest.mark.parametrize("name", sorted(ALL_OPTIMIZERS))
def test_config_round_trip(name):
    opt = ALL_OPTIMIZERS[name]()
    config = opt.get_config()
    assert json.loads(json.dumps(config)) == config
    clone = type(opt).from_config(copy.deepcopy(config))
    assert type(clone) is type(opt) and clone.get_config() == config
    spec = optimizers.serialize(opt)
    assert spec == {"class_name": type(opt).__name__, "config": config}
    assert optimizers.deserialize(copy.deepcopy(spec)).get_config() == config
    assert optimizers.get(copy.deepcopy(spec)).get_config() == config


def test_config_with_a_schedule():
    schedule = schedules.CosineDecayRestarts(0.1, 20, t_mul=1.5, m_mul=0.8, alpha=0.05)
    opt = optimizers.RMSprop(schedule, rho=0.8)
    config = opt.get_config()
    assert config["learning_rate"] == {"class_name": "CosineDecayRestarts", "config": schedule.get_config()}
    clone = optimizers.deserialize(json.loads(json.dumps(optimizers.serialize(opt))))
    assert clone.learning_rate_schedule == schedule
    assert clone.learning_rate == pytest.approx(0.1)


@pytest.mark.parametrize("name", sorted(ALL_OPTIMIZERS))
def test_updates_in_place_and_leaves_gradients_alone(name, rng):
    shapes = MUON_SHAPES if name == "muon" else SHAPES
    params, grads = make_problem(rng, shapes=shapes, steps=3)
    ids = [id(p) for p in params]
    before = [p.copy() for p in params]
    opt = ALL_OPTIMIZERS[name]()
    for step in grads:
        saved = [g.copy() for g in step]
        opt.apply_gradients(list(zip(step, params)))
        for g, s in zip(step, saved):
            assert np.array_equal(g, s), f"{name} wrote into a gradient"
    assert [id(p) for p in params] == ids
    assert all(not np.array_equal(p, b) for p, b in zip(params, before))
    assert opt.iterations == 3


@pytest.mark.parametrize("name", sorted(ALL_OPTIMIZERS))
def test_float32_stays_float32_and_tracks_float64(name, rng):
    shapes = MUON_SHAPES if name == "muon" else SHAPES
    params64, grads64 = make_problem(rng, shapes=shapes, steps=5)
    params32 = [p.astype(np.float32) for p in params64]
    grads32 = [[g.astype(np.float32) for g in step] for step in grads64]
    opt32 = ALL_OPTIMIZERS[name]()
    h32 = run_fusenet(opt32, params32, grads32)[-1]
    h64 = run_fusenet(ALL_OPTIMIZERS[name](), params64, grads64)[-1]
    assert all(p.dtype == np.float32 for p in h32)
    assert all(a.dtype == np.float32 for a in opt32.get_state()["slots"])
    for a, b in zip(h32, h64):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


def test_mixed_gradient_dtypes_are_cast_to_the_parameter():
    p = np.ones((2, 2), dtype=np.float32)
    optimizers.SGD(0.5).apply_gradients([(np.ones((2, 2), dtype=np.float64), p)])
    assert p.dtype == np.float32 and np.all(p == 0.5)
    q = np.zeros(3)
    optimizers.SGD(1.0).apply_gradients([(np.array([1, 2, 3]), q)])
    assert np.array_equal(q, [-1.0, -2.0, -3.0])


def test_empty_pairs_do_nothing():
    opt = optimizers.Adam()
    opt.apply_gradients([])
    assert opt.iterations == 0 and not opt.built


def test_learning_rate_property():
    schedule = schedules.ExponentialDecay(0.1, decay_steps=1, decay_rate=0.5)
    opt = optimizers.SGD(schedule)
    p = np.zeros(2)
    assert opt.learning_rate == 0.1
    opt.apply_gradients([(np.ones(2), p)])
    assert opt.learning_rate == 0.05 and np.allclose(p, -0.1)
    opt.learning_rate = schedules.ExponentialDecay(1.0, decay_steps=1, decay_rate=0.5)
    assert opt.learning_rate == 0.5
    flat = optimizers.SGD(0.1)
    flat.learning_rate = 0.02
    assert flat.learning_rate == 0.02 and flat.get_config()["learning_rate"] == 0.02


def test_get_by_name():
    for name in ["sgd", "adam", "adamw", "nadam", "radam", "adamax", "rmsprop", "rprop", "adagrad", "adadelta",
                 "adafactor", "lion", "ftrl", "asgd", "muon"]:
        opt = optimizers.get(name)
        assert type(opt).__name__.lower() == name
    for camel in ["SGD", "Adam", "AdamW", "Nadam", "RAdam", "Adamax", "RMSprop", "Rprop", "Adagrad", "Adadelta",
                  "Adafactor", "Lion", "Ftrl", "ASGD", "Muon"]:
        assert type(optimizers.get(camel)).__name__ == camel
    adam = optimizers.Adam()
    assert optimizers.get(adam) is adam
    assert optimizers.get({"class_name": "adam", "config": {"learning_rate": 0.1}}).learning_rate == 0.1
    assert optimizers.SGD().learning_rate == 0.01 and optimizers.Adam().epsilon == 1e-7
    assert optimizers.AdamW().weight_decay == 0.004


def test_weight_decay_exclusion_by_name(rng):
    layer = layers.Dense(3, dtype="float64", bias_initializer="ones")
    layer(rng.normal(size=(2, 4)))
    kernel, bias = layer.params["kernel"].copy(), layer.params["bias"].copy()
    opt = optimizers.SGD(0.1, weight_decay=0.5)
    opt.exclude_from_weight_decay(var_names=["bias"])
    opt.apply([layer])  # zero gradients: only the decay moves the weights
    np.testing.assert_allclose(layer.params["kernel"], kernel * (1 - 0.05), rtol=1e-12)
    assert np.array_equal(layer.params["bias"], bias)
    with pytest.raises(ValueError, match="before the first update"):
        opt.exclude_from_weight_decay(var_names=["kernel"])


# ---------------------------------------------------------------- integration with a layer
def test_dense_layer_step(rng):
    """Forward, backward with a known dy, then SGD.apply([layer]) moves the kernel by -lr * x^T dy."""
    layer = layers.Dense(3, dtype="float64")
    x = rng.normal(size=(4, 5))
    layer(x, training=True)
    dy = rng.normal(size=(4, 3))
    layer.zero_grad()
    layer.backward(dy)
    kernel, bias = layer.params["kernel"], layer.params["bias"]
    k0, b0 = kernel.copy(), bias.copy()
    optimizers.SGD(0.1).apply([layer])
    assert layer.params["kernel"] is kernel  # updated in place
    np.testing.assert_allclose(kernel, k0 - 0.1 * x.T @ dy, rtol=1e-12)
    np.testing.assert_allclose(bias, b0 - 0.1 * dy.sum(axis=0), rtol=1e-12)
    # a single layer object works too, and Adam's first step is lr * m / (sqrt(v) + eps) as Keras
    k1 = kernel.copy()
    optimizers.Adam(0.01).apply(layer)
    g = x.T @ dy
    np.testing.assert_allclose(kernel, k1 - 0.01 * np.sqrt(1 - 0.999) / 0.1 * (0.1 * g) / (np.sqrt(0.001) * np.abs(g) + 1e-7),
                               rtol=1e-10)


def test_apply_projects_constrained_weights(rng):
    layer = layers.Dense(3, dtype="float64", kernel_constraint="non_neg")
    layer(rng.normal(size=(2, 4)), training=True)
    layer.backward(np.full((2, 3), 5.0))
    optimizers.SGD(1.0).apply([layer])
    assert np.all(layer.params["kernel"] >= 0)


def test_apply_skips_frozen_layers(rng):
    frozen = layers.Dense(3, dtype="float64", trainable=False)
    frozen(rng.normal(size=(2, 4)))
    before = frozen.get_weights()
    opt = optimizers.SGD(0.1, weight_decay=0.5)
    opt.apply([frozen])
    assert all(np.array_equal(a, b) for a, b in zip(before, frozen.get_weights()))
    assert opt.iterations == 0


# ---------------------------------------------------------------- errors
def test_bad_hyper_parameters():
    with pytest.raises(ValueError, match=r"Adam: expected learning_rate to be a non-negative float\. Received: learning_rate=-0\.1"):
        optimizers.Adam(learning_rate=-0.1)
    with pytest.raises(TypeError, match="learning_rate='fast'"):
        optimizers.SGD(learning_rate="fast")
    with pytest.raises(ValueError, match="only one of clipnorm, clipvalue and global_clipnorm.*clipnorm=1.0"):
        optimizers.SGD(clipnorm=1.0, global_clipnorm=1.0)
    with pytest.raises(ValueError, match="only one of"):
        optimizers.Adam(clipnorm=1.0, clipvalue=0.5)
    with pytest.raises(ValueError, match=r"clipnorm.*Received: clipnorm=0\.0"):
        optimizers.Adam(clipnorm=0.0)
    with pytest.raises(ValueError, match=r"SGD: expected momentum .*Received: momentum=1\.5"):
        optimizers.SGD(momentum=1.5)
    with pytest.raises(ValueError, match="weight_decay=None"):
        optimizers.AdamW(weight_decay=None)
    with pytest.raises(ValueError, match=r"weight_decay=-0\.1"):
        optimizers.Lion(weight_decay=-0.1)
    with pytest.raises(ValueError, match="learning_rate_power=0.5"):
        optimizers.Ftrl(learning_rate_power=0.5)
    with pytest.raises(ValueError, match=r"beta_1=0\.0"):
        optimizers.Lion(beta_1=0.0)
    with pytest.raises(ValueError, match=r"Adam: expected beta_2 .*Received: beta_2=1\.0"):
        optimizers.Adam(beta_2=1.0)
    with pytest.raises(ValueError, match="etas"):
        optimizers.Rprop(etas=(1.5, 1.2))
    with pytest.raises(ValueError, match="step_sizes"):
        optimizers.Rprop(step_sizes=(1.0, 0.1))
    with pytest.raises(ValueError, match="ns_steps"):
        optimizers.Muon(ns_steps=-1)
    with pytest.raises(TypeError, match="exclude_layers"):
        optimizers.Muon(exclude_layers="head")


def test_unknown_names():
    with pytest.raises(ValueError, match=r"Unknown optimizer: 'adamz'\. Valid names: \[.*'adam'.*'sgd'"):
        optimizers.get("adamz")
    with pytest.raises(ValueError, match="Unknown optimizer: 'os.system'"):
        optimizers.deserialize({"class_name": "os.system", "config": {}})
    with pytest.raises(TypeError, match="Expected an optimizer name"):
        optimizers.get(3)
    with pytest.raises(TypeError, match="register_optimizer"):
        optimizers.register_optimizer(dict)


def test_register_a_user_optimizer():
    class SignSGD(optimizers.Optimizer):
        def _update(self, g, p, s, lr, t):
            p -= lr * np.sign(g)

    optimizers.register_optimizer(SignSGD)
    opt = optimizers.deserialize({"class_name": "SignSGD", "config": {"learning_rate": 0.5}})
    p = np.zeros(3)
    opt.apply_gradients([(np.array([2.0, -3.0, 0.0]), p)])
    assert np.array_equal(p, [-0.5, 0.5, 0.0])


def test_learning_rate_not_settable_with_a_schedule():
    opt = optimizers.Adam(schedules.ExponentialDecay(0.1, 10, 0.9))
    with pytest.raises(TypeError, match="not settable"):
        opt.learning_rate = 0.01
    with pytest.raises(ValueError, match="learning_rate=-1"):
        optimizers.Adam().learning_rate = -1


def test_bad_pairs():
    opt = optimizers.SGD()
    with pytest.raises(ValueError, match=r"grad 0 has shape \(3,\), but its param has shape \(2,\)"):
        opt.apply_gradients([(np.ones(3), np.ones(2))])
    with pytest.raises(TypeError, match="param 0 to be a float numpy array"):
        opt.apply_gradients([(np.ones(2), [1.0, 2.0])])
    with pytest.raises(TypeError, match="param 0 to be a float numpy array"):
        opt.apply_gradients([(np.ones(2), np.ones(2, dtype=int))])
    with pytest.raises(TypeError, match=r"expected \(grad, param\) pairs"):
        opt.apply_gradients([np.ones(2)])
    frozen = np.ones(2)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        opt.apply_gradients([(np.ones(2), frozen)])


def test_changed_parameter_shapes_raise():
    opt = optimizers.Adam()
    opt.apply_gradients([(np.ones(2), np.ones(2)), (np.ones((2, 2)), np.ones((2, 2)))])
    with pytest.raises(ValueError, match=r"built for 2 parameters with shapes \[\(2,\), \(2, 2\)\].*received 1"):
        opt.apply_gradients([(np.ones(2), np.ones(2))])
    with pytest.raises(ValueError, match=r"shapes \[\(3,\), \(2, 2\)\]"):
        opt.apply_gradients([(np.ones(3), np.ones(3)), (np.ones((2, 2)), np.ones((2, 2)))])


def test_state_with_wrong_shapes(rng):
    params, grads = make_problem(rng, steps=2)
    opt = optimizers.Adam()
    run_fusenet(opt, params, grads)
    state = opt.get_state()

    bad = copy.deepcopy(state)
    bad["slots"][0] = np.zeros((5, 5))
    with pytest.raises(ValueError, match=r"slot '0/momentum' expects shape \(4, 3\).*shape \(5, 5\)"):
        optimizers.Adam().set_state(bad)
    with pytest.raises(ValueError, match="expects shape"):
        opt.set_state(bad)

    other = optimizers.Adam()
    other.apply_gradients([(np.ones(2), np.ones(2))])
    with pytest.raises(ValueError, match=r"the state is for parameters with shapes \[\(4, 3\), \(3,\), \(2, 3, 2\)\]"):
        other.set_state(state)

    pending = optimizers.Adam()
    pending.set_state(state)
    with pytest.raises(ValueError, match="the state set with set_state"):
        pending.apply_gradients([(np.ones(2), np.ones(2))])

    missing = copy.deepcopy(state)
    del missing["slots"][-1], missing["slot_names"][-1]
    with pytest.raises(ValueError, match=r"parameter 2 expects slots \['momentum', 'velocity'\]"):
        opt.set_state(missing)

    before = opt.get_state()
    with pytest.raises(ValueError, match="belongs to a 'SGD' optimizer"):
        opt.set_state(optimizers.SGD().get_state())
    with pytest.raises(ValueError, match="unexpected slot '0/accumulator'"):
        opt.set_state({**state, "slot_names": ["0/accumulator"] + state["slot_names"][1:]})
    with pytest.raises(ValueError, match="iterations"):
        opt.set_state({**state, "iterations": -1})
    after = opt.get_state()
    assert before["iterations"] == after["iterations"]
    assert all(np.array_equal(a, b) for a, b in zip(before["slots"], after["slots"]))  # nothing changed


def test_state_from_another_configuration():
    """SGD without momentum has no slots; a momentum state does not fit it."""
    p = np.ones(3)
    with_momentum = optimizers.SGD(momentum=0.9)
    with_momentum.apply_gradients([(np.ones(3), p)])
    plain = optimizers.SGD()
    plain.set_state(with_momentum.get_state())
    with pytest.raises(ValueError, match=r"parameter 0 expects slots \[\]"):
        plain.apply_gradients([(np.ones(3), p)])


def test_ftrl_needs_a_positive_learning_rate():
    opt = optimizers.Ftrl(0.0)
    with pytest.raises(ValueError, match="Ftrl: the learning rate must be positive"):
        opt.apply_gradients([(np.ones(2), np.ones(2))])
