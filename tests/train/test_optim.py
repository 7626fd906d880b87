"""Learning-rate schedules (pure functions of the step) and optimizer construction from config."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from deepkit import create_model
from deepkit.config import from_dict
from deepkit.errors import ConfigError
from deepkit.train.optim import OptimizerConfig, Schedule, ScheduleConfig, build_optimizer


def schedule(total=100, per_epoch=10, **cfg) -> Schedule:
    return Schedule(ScheduleConfig(**cfg), total_steps=total, steps_per_epoch=per_epoch)


# --- schedules -------------------------------------------------------------------------------------------------------


def test_constant_without_warmup():
    s = schedule()
    assert [s.factor(k) for k in (0, 1, 50, 99, 500)] == [1.0] * 5


def test_constant_with_linear_warmup():
    s = schedule(warmup_steps=10)
    assert s.factor(0) > 0
    assert s.factor(9) == 1.0
    for k in range(10):
        assert s.factor(k) == pytest.approx((k + 1) / 10)
    diffs = [s.factor(k + 1) - s.factor(k) for k in range(9)]
    assert max(diffs) - min(diffs) < 1e-12, "warm-up should be linear"
    assert s.factor(10) == s.factor(77) == 1.0


def test_warmup_epochs_converts_with_steps_per_epoch():
    s = schedule(warmup_epochs=1.5, per_epoch=10)
    assert s.warmup == 15
    assert s.factor(14) == 1.0 and s.factor(13) < 1.0
    assert schedule(warmup_steps=4, warmup_epochs=3).warmup == 4  # steps win when both are set


def test_step_schedule_every_step_size_epochs():
    s = schedule(name="step", step_size=2, gamma=0.5, per_epoch=10)
    assert [s.factor(k) for k in (0, 19)] == [1.0, 1.0]
    assert s.factor(20) == pytest.approx(0.5) and s.factor(39) == pytest.approx(0.5)
    assert s.factor(40) == pytest.approx(0.25)
    assert s.factor(60) == pytest.approx(0.125)


def test_step_schedule_milestones():
    s = schedule(name="step", milestones=[1, 3], gamma=0.1, per_epoch=10)
    assert s.factor(9) == 1.0
    assert s.factor(10) == pytest.approx(0.1) and s.factor(29) == pytest.approx(0.1)
    assert s.factor(30) == pytest.approx(0.01) and s.factor(99) == pytest.approx(0.01)


def test_step_schedule_rejects_zero_step_size():
    with pytest.raises(ConfigError, match="step_size"):
        schedule(name="step", step_size=0)


def test_cosine_from_one_to_final_ratio():
    s = schedule(name="cosine", total=100, final_lr_ratio=0.1)
    values = [s.factor(k) for k in range(101)]
    assert values[0] == pytest.approx(1.0)
    assert values[100] == pytest.approx(0.1)
    assert values[50] == pytest.approx(0.55)  # halfway on the cosine
    assert all(b <= a + 1e-12 for a, b in zip(values, values[1:], strict=False))
    assert s.factor(500) == pytest.approx(0.1)  # stays at the floor past the end


def test_cosine_with_warmup():
    s = schedule(name="cosine", total=100, warmup_steps=10)
    warm = [s.factor(k) for k in range(10)]
    assert warm == pytest.approx([(k + 1) / 10 for k in range(10)])
    assert s.factor(10) == pytest.approx(1.0)
    after = [s.factor(k) for k in range(10, 101)]
    assert all(b <= a + 1e-12 for a, b in zip(after, after[1:], strict=False))
    assert after[-1] == pytest.approx(0.0, abs=1e-12)
    # the doctest in optim.py
    assert (s.factor(4), s.factor(10), round(s.factor(100), 6)) == (0.5, 1.0, 0.0)


def test_onecycle_shape():
    s = schedule(name="onecycle", total=100, pct_start=0.3, div_factor=25, final_div_factor=1e4)
    values = [s.factor(k) for k in range(101)]
    assert values[0] == pytest.approx(1 / 25)
    assert values[30] == pytest.approx(1.0) and max(values) == pytest.approx(1.0)
    assert values[100] == pytest.approx(1 / (25 * 1e4))
    assert all(b >= a - 1e-12 for a, b in zip(values[:30], values[1:31], strict=True)), "rises until pct_start"
    assert all(b <= a + 1e-12 for a, b in zip(values[30:], values[31:], strict=False)), "then falls"


def test_schedule_apply_sets_every_group_without_compounding():
    model = create_model("mlp", in_features=4, num_classes=2, width=8)
    opt = build_optimizer(model, OptimizerConfig(name="sgd", lr=0.2, weight_decay=0.1))
    assert len(opt.param_groups) == 2
    s = schedule(name="step", step_size=1, gamma=0.5, per_epoch=1)
    assert s.apply(opt, 2) == pytest.approx(0.05)
    assert s.apply(opt, 2) == pytest.approx(0.05), "apply must use the base lr, not the current one"
    assert s.apply(opt, 0) == pytest.approx(0.2)
    assert all(g["lr"] == pytest.approx(0.2) and g["initial_lr"] == 0.2 for g in opt.param_groups)


def test_unknown_schedule_name():
    with pytest.raises(ConfigError, match="schedule.name"):
        from_dict(ScheduleConfig, {"name": "cosin"}, "trainer.schedule")
    with pytest.raises(ConfigError, match="unknown schedule"):
        Schedule(ScheduleConfig(name="warp"), 10, 1).factor(0)  # type: ignore[arg-type]


# --- optimizers ------------------------------------------------------------------------------------------------------


@pytest.fixture
def model() -> nn.Module:
    torch.manual_seed(0)
    return create_model("mlp", in_features=4, num_classes=3, width=8, norm="batchnorm")


def test_build_sgd(model):
    opt = build_optimizer(model, OptimizerConfig(name="sgd", lr=0.05, momentum=0.8, nesterov=True))
    assert type(opt) is torch.optim.SGD
    g = opt.param_groups[0]
    assert (g["lr"], g["momentum"], g["nesterov"]) == (0.05, 0.8, True)


def test_build_adam_and_adamw(model):
    adam = build_optimizer(model, OptimizerConfig(name="adam", lr=0.01, betas=[0.8, 0.95], eps=1e-6))
    assert type(adam) is torch.optim.Adam
    assert adam.param_groups[0]["betas"] == (0.8, 0.95) and adam.param_groups[0]["eps"] == 1e-6
    adamw = build_optimizer(model, OptimizerConfig(name="adamw", lr=0.01, weight_decay=0.05))
    assert type(adamw) is torch.optim.AdamW
    assert adamw.param_groups[0]["weight_decay"] == 0.05


def test_build_rmsprop(model):
    opt = build_optimizer(model, OptimizerConfig(name="rmsprop", lr=0.01, alpha=0.9, momentum=0.5))
    assert type(opt) is torch.optim.RMSprop
    assert (opt.param_groups[0]["alpha"], opt.param_groups[0]["momentum"]) == (0.9, 0.5)


def test_bad_lr_and_name(model):
    with pytest.raises(ConfigError, match="lr must be > 0"):
        build_optimizer(model, OptimizerConfig(lr=0))
    with pytest.raises(ConfigError, match="optimizer.name"):
        from_dict(OptimizerConfig, {"name": "adamm"}, "trainer.optimizer")


def test_weight_decay_skips_1d_params_by_default(model):
    opt = build_optimizer(model, OptimizerConfig(name="adamw", weight_decay=0.1))
    decay, no_decay = opt.param_groups
    params = list(model.parameters())
    assert {id(p) for p in decay["params"]} == {id(p) for p in params if p.ndim >= 2}
    assert {id(p) for p in no_decay["params"]} == {id(p) for p in params if p.ndim < 2}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm1d))
    assert any(p is bn.weight for p in no_decay["params"]), "norm scales are not decayed"


def test_weight_decay_everything_when_asked(model):
    opt = build_optimizer(model, OptimizerConfig(name="adamw", weight_decay=0.1, decay_bias_and_norm=True))
    assert len(opt.param_groups) == 1
    assert opt.param_groups[0]["weight_decay"] == 0.1
    assert len(opt.param_groups[0]["params"]) == len(list(model.parameters()))


def test_frozen_params_are_left_out(model):
    model.head.weight.requires_grad_(False)
    opt = build_optimizer(model, OptimizerConfig(name="sgd"))
    assert all(p is not model.head.weight for g in opt.param_groups for p in g["params"])


class Linear1(nn.Module):
    """w · x with w of shape (1, 3), so the gradient of sum(w · x) is x."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([[0.5, -1.0, 2.0]]))

    def forward(self, x):
        return (self.w * x).sum()


def two_steps(opt_cfg: OptimizerConfig, grads: list[torch.Tensor]) -> list[torch.Tensor]:
    m = Linear1()
    opt = build_optimizer(m, opt_cfg)
    seen = [m.w.detach().clone()]
    for g in grads:
        opt.zero_grad()
        m(g).backward()
        opt.step()
        seen.append(m.w.detach().clone())
    return seen


def test_sgd_momentum_matches_hand_formula():
    lr, mu = 0.1, 0.9
    g1, g2 = torch.tensor([[1.0, 2.0, -1.0]]), torch.tensor([[0.5, -1.0, 3.0]])
    w0, w1, w2 = two_steps(OptimizerConfig(name="sgd", lr=lr, momentum=mu), [g1, g2])
    buf1 = g1
    torch.testing.assert_close(w1, w0 - lr * buf1)
    buf2 = mu * buf1 + g2
    torch.testing.assert_close(w2, w1 - lr * buf2)


def test_sgd_nesterov_matches_hand_formula_and_differs():
    lr, mu = 0.1, 0.9
    g1, g2 = torch.tensor([[1.0, 2.0, -1.0]]), torch.tensor([[0.5, -1.0, 3.0]])
    w0, w1, w2 = two_steps(OptimizerConfig(name="sgd", lr=lr, momentum=mu, nesterov=True), [g1, g2])
    buf1 = g1
    torch.testing.assert_close(w1, w0 - lr * (g1 + mu * buf1))
    buf2 = mu * buf1 + g2
    torch.testing.assert_close(w2, w1 - lr * (g2 + mu * buf2))
    plain = two_steps(OptimizerConfig(name="sgd", lr=lr, momentum=mu), [g1, g2])
    assert not torch.allclose(plain[2] - plain[1], w2 - w1), "nesterov's second step should differ"


def test_sgd_weight_decay_is_l2_on_matrices():
    lr, wd = 0.1, 0.5
    g = torch.tensor([[1.0, 0.0, -1.0]])
    w0, w1 = two_steps(OptimizerConfig(name="sgd", lr=lr, momentum=0.0, weight_decay=wd), [g])
    torch.testing.assert_close(w1, w0 - lr * (g + wd * w0))


def test_adamw_first_step_is_lr_sized():
    lr = 0.01
    g = torch.tensor([[1e-3, -5.0, 200.0]])
    w0, w1 = two_steps(OptimizerConfig(name="adamw", lr=lr), [g])
    torch.testing.assert_close(w0 - w1, lr * torch.sign(g), rtol=1e-4, atol=1e-6)
    assert math.isclose(float((w0 - w1).abs().max()), lr, rel_tol=1e-3)


def test_nesterov_without_momentum_is_config_error(model):
    with pytest.raises(ConfigError, match="momentum"):
        build_optimizer(model, OptimizerConfig(name="sgd", momentum=0.0, nesterov=True))
