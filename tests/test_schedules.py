"""Learning-rate schedules against Keras 3's formulas (written out with NumPy below), config round
trips, and errors."""

import copy
import json
import math

import numpy as np
import pytest

from fusenet import optimizers
from fusenet.optimizers import schedules

STEPS = [0, 1, 2, 3, 5, 7, 10, 11, 19, 20, 21, 37, 100, 1000]


# ---------------------------------------------------------------- Keras's formulas
def keras_exponential(step, initial, decay_steps, decay_rate, staircase):
    p = np.float64(step) / decay_steps
    if staircase:
        p = np.floor(p)
    return initial * np.power(decay_rate, p)


def keras_piecewise(step, boundaries, values):
    result = float(step <= boundaries[0]) * values[0] + float(step > boundaries[-1]) * values[-1]
    for low, high, v in zip(boundaries[:-1], boundaries[1:], values[1:-1]):
        result += float(low < step <= high) * v
    return result


def keras_polynomial(step, initial, decay_steps, end, power, cycle):
    step = np.float64(step)
    if cycle:
        multiplier = 1.0 if step == 0 else np.ceil(step / decay_steps)
        decay_steps = decay_steps * multiplier
    else:
        step = np.minimum(step, decay_steps)
    p = step / decay_steps
    return (initial - end) * np.power(1 - p, power) + end


def keras_inverse_time(step, initial, decay_steps, decay_rate, staircase):
    p = np.float64(step) / decay_steps
    if staircase:
        p = np.floor(p)
    return initial / (1 + decay_rate * p)


def keras_cosine(step, initial, decay_steps, alpha, warmup_target, warmup_steps):
    def decay(s, decay_from):
        cosine_decayed = 0.5 * (1.0 + np.cos(np.pi * (s / decay_steps)))
        return decay_from * ((1 - alpha) * cosine_decayed + alpha)

    step = np.float64(step)
    if warmup_target is None:
        return decay(np.minimum(step, decay_steps), initial)
    step = np.minimum(step, decay_steps + warmup_steps)
    if step < warmup_steps:
        return (warmup_target - initial) * (step / warmup_steps) + initial
    return decay(step - warmup_steps, warmup_target)


def keras_restarts(step, initial, first_decay_steps, t_mul, m_mul, alpha):
    completed_fraction = np.float64(step) / first_decay_steps
    if t_mul == 1.0:
        i_restart = np.floor(completed_fraction)
        completed_fraction -= i_restart
    else:
        i_restart = np.floor(np.log(1.0 - completed_fraction * (1.0 - t_mul)) / np.log(t_mul))
        sum_r = (1.0 - t_mul**i_restart) / (1.0 - t_mul)
        completed_fraction = (completed_fraction - sum_r) / t_mul**i_restart
    m_fac = m_mul**i_restart
    cosine_decayed = 0.5 * m_fac * (1.0 + np.cos(np.pi * completed_fraction))
    return initial * ((1 - alpha) * cosine_decayed + alpha)


CASES = [
    ("exponential", lambda: schedules.ExponentialDecay(0.1, 10, 0.5),
     lambda s: keras_exponential(s, 0.1, 10, 0.5, False)),
    ("exponential-staircase", lambda: schedules.ExponentialDecay(0.1, 7, 0.9, staircase=True),
     lambda s: keras_exponential(s, 0.1, 7, 0.9, True)),
    ("piecewise", lambda: schedules.PiecewiseConstantDecay([5, 10, 20], [1.0, 0.5, 0.1, 0.01]),
     lambda s: keras_piecewise(s, [5, 10, 20], [1.0, 0.5, 0.1, 0.01])),
    ("piecewise-one-boundary", lambda: schedules.PiecewiseConstantDecay([3], [0.2, 0.02]),
     lambda s: keras_piecewise(s, [3], [0.2, 0.02])),
    ("polynomial", lambda: schedules.PolynomialDecay(0.1, 20, 0.001),
     lambda s: keras_polynomial(s, 0.1, 20, 0.001, 1.0, False)),
    ("polynomial-power-cycle", lambda: schedules.PolynomialDecay(0.1, 7, 0.01, power=0.5, cycle=True),
     lambda s: keras_polynomial(s, 0.1, 7, 0.01, 0.5, True)),
    ("inverse-time", lambda: schedules.InverseTimeDecay(0.1, 5, 0.5),
     lambda s: keras_inverse_time(s, 0.1, 5, 0.5, False)),
    ("inverse-time-staircase", lambda: schedules.InverseTimeDecay(0.1, 3, 2.0, staircase=True),
     lambda s: keras_inverse_time(s, 0.1, 3, 2.0, True)),
    ("cosine", lambda: schedules.CosineDecay(0.1, 20),
     lambda s: keras_cosine(s, 0.1, 20, 0.0, None, 0)),
    ("cosine-alpha", lambda: schedules.CosineDecay(0.1, 11, alpha=0.2),
     lambda s: keras_cosine(s, 0.1, 11, 0.2, None, 0)),
    ("cosine-warmup", lambda: schedules.CosineDecay(0.0, 20, alpha=0.1, warmup_target=0.5, warmup_steps=10),
     lambda s: keras_cosine(s, 0.0, 20, 0.1, 0.5, 10)),
    ("cosine-warmup-from-nonzero", lambda: schedules.CosineDecay(0.01, 5, warmup_target=0.1, warmup_steps=3),
     lambda s: keras_cosine(s, 0.01, 5, 0.0, 0.1, 3)),
    ("cosine-target-no-warmup", lambda: schedules.CosineDecay(0.01, 5, warmup_target=0.1),
     lambda s: keras_cosine(s, 0.01, 5, 0.0, 0.1, 0)),
    ("restarts", lambda: schedules.CosineDecayRestarts(0.1, 5),
     lambda s: keras_restarts(s, 0.1, 5, 2.0, 1.0, 0.0)),
    ("restarts-t1-mmul-alpha", lambda: schedules.CosineDecayRestarts(0.1, 4, t_mul=1.0, m_mul=0.5, alpha=0.1),
     lambda s: keras_restarts(s, 0.1, 4, 1.0, 0.5, 0.1)),
    ("restarts-fractional-tmul", lambda: schedules.CosineDecayRestarts(0.3, 3, t_mul=1.5, m_mul=0.9),
     lambda s: keras_restarts(s, 0.3, 3, 1.5, 0.9, 0.0)),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_matches_keras_formula(case):
    name, make, formula = case
    schedule = make()
    for step in STEPS:
        value = schedule(step)
        assert isinstance(value, float), f"{name}: step {step} gave {type(value).__name__}"
        np.testing.assert_allclose(value, formula(step), rtol=1e-12, atol=1e-15, err_msg=f"{name} at step {step}")
    assert schedule(np.int64(7)) == schedule(7)


def test_known_values():
    """A few values worked by hand."""
    assert schedules.ExponentialDecay(1.0, 2, 0.25)(4) == pytest.approx(0.0625)
    assert schedules.ExponentialDecay(1.0, 2, 0.25, staircase=True)(3) == pytest.approx(0.25)
    pw = schedules.PiecewiseConstantDecay([10, 20], [1.0, 0.5, 0.1])
    assert [pw(s) for s in (0, 10, 11, 20, 21)] == [1.0, 1.0, 0.5, 0.5, 0.1]
    assert schedules.PolynomialDecay(1.0, 10, 0.0)(5) == pytest.approx(0.5)
    assert schedules.PolynomialDecay(1.0, 10, 0.0)(50) == pytest.approx(0.0)
    assert schedules.PolynomialDecay(1.0, 10, 0.0, cycle=True)(15) == pytest.approx(0.25)  # decay_steps becomes 20
    assert schedules.InverseTimeDecay(1.0, 1, 1.0)(3) == pytest.approx(0.25)
    assert schedules.CosineDecay(1.0, 10)(5) == pytest.approx(0.5)
    warm = schedules.CosineDecay(0.0, 10, warmup_target=1.0, warmup_steps=4)
    assert [warm(s) for s in (0, 2, 4)] == pytest.approx([0.0, 0.5, 1.0])
    assert warm(9) == pytest.approx(0.5) and warm(100) == pytest.approx(0.0)
    restarts = schedules.CosineDecayRestarts(1.0, 10, t_mul=2.0, m_mul=0.5)
    assert restarts(10) == pytest.approx(0.5)  # second period starts at m_mul * initial
    assert restarts(20) == pytest.approx(0.25)  # halfway through the 20-step second period: 0.5 * 0.5
    assert restarts(30) == pytest.approx(0.25)  # third period starts at 0.25


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_config_round_trip(case):
    schedule = case[1]()
    config = schedule.get_config()
    assert json.loads(json.dumps(config)) == config
    clone = type(schedule).from_config(copy.deepcopy(config))
    assert clone == schedule and clone.get_config() == config
    spec = schedules.serialize(schedule)
    assert spec == {"class_name": type(schedule).__name__, "config": config}
    restored = schedules.deserialize(json.loads(json.dumps(spec)))
    assert restored == schedule and schedules.get(spec) == schedule and schedules.get(schedule) is schedule
    assert [restored(s) for s in STEPS] == [schedule(s) for s in STEPS]


def test_optimizer_uses_the_schedule_at_its_iterations():
    schedule = schedules.PiecewiseConstantDecay([1, 2], [1.0, 0.1, 0.01])
    opt = optimizers.SGD(schedule)
    p = np.zeros(1)
    seen = []
    for _ in range(4):
        seen.append(opt.learning_rate)
        opt.apply_gradients([(np.ones(1), p)])
    assert seen == [1.0, 1.0, 0.1, 0.01]  # iterations 0, 1, 2, 3
    assert p[0] == pytest.approx(-(1.0 + 1.0 + 0.1 + 0.01))


def test_user_schedule_needs_registration():
    class Halving(schedules.LearningRateSchedule):
        def __init__(self, initial):
            self.initial = initial

        def __call__(self, step):
            return self.initial / 2**step

        def get_config(self):
            return {"initial": self.initial}

    spec = schedules.serialize(Halving(0.8))
    with pytest.raises(ValueError, match="Unknown learning rate schedule class: 'Halving'"):
        schedules.deserialize(spec)
    schedules.register_schedule(Halving)
    assert schedules.deserialize(spec)(2) == 0.2
    opt = optimizers.deserialize(json.loads(json.dumps(optimizers.serialize(optimizers.Adam(Halving(0.8))))))
    assert opt.learning_rate == 0.8


def test_errors():
    with pytest.raises(ValueError, match=r"ExponentialDecay: expected decay_steps to be > 0\. Received: decay_steps=0"):
        schedules.ExponentialDecay(0.1, 0, 0.5)
    with pytest.raises(ValueError, match="decay_steps=-5"):
        schedules.PolynomialDecay(0.1, -5)
    with pytest.raises(ValueError, match="decay_steps=0"):
        schedules.InverseTimeDecay(0.1, 0, 0.5)
    with pytest.raises(ValueError, match="decay_steps=0"):
        schedules.CosineDecay(0.1, 0)
    with pytest.raises(ValueError, match="first_decay_steps=0"):
        schedules.CosineDecayRestarts(0.1, 0)
    with pytest.raises(ValueError, match="warmup_steps=-1"):
        schedules.CosineDecay(0.1, 10, warmup_target=1.0, warmup_steps=-1)
    with pytest.raises(ValueError, match=r"length of boundaries should be 1 less than the length of values.*\[1, 2\]"):
        schedules.PiecewiseConstantDecay([1, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="strictly increasing"):
        schedules.PiecewiseConstantDecay([5, 5], [0.1, 0.2, 0.3])
    with pytest.raises(TypeError, match="initial_learning_rate='big'"):
        schedules.ExponentialDecay("big", 10, 0.5)
    with pytest.raises(ValueError, match="initial_learning_rate=inf"):
        schedules.CosineDecay(math.inf, 10)
    with pytest.raises(TypeError, match="step"):
        schedules.ExponentialDecay(0.1, 10, 0.5)("3")
    with pytest.raises(ValueError, match="Unknown learning rate schedule class: 'os.system'"):
        schedules.deserialize({"class_name": "os.system", "config": {}})
    with pytest.raises(ValueError, match="Expected a schedule spec"):
        schedules.deserialize("ExponentialDecay")
    with pytest.raises(TypeError, match="LearningRateSchedule"):
        schedules.register_schedule(int)
    with pytest.raises(TypeError, match="LearningRateSchedule"):
        schedules.get(0.1)


def test_negative_learning_rate_from_a_schedule_is_refused():
    opt = optimizers.SGD(schedules.PolynomialDecay(0.1, 10, end_learning_rate=-0.1))
    p = np.zeros(1)
    for _ in range(5):
        opt.apply_gradients([(np.ones(1), p)])
    with pytest.raises(ValueError, match=r"the schedule gave -0\.0[0-9]* at step 6"):
        for _ in range(5):
            opt.apply_gradients([(np.ones(1), p)])
