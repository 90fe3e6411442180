"""GreedyLR in a real pytorch_lightning.Trainer.fit on CPU."""

import warnings

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from learnlr import GreedyLR
from learnlr.control.schedule import BUDGET_PER_EVAL, EVAL_MIN_LR_RATIO, eval_warmup_steps
from learnlr.integrations.lightning import GreedyLRDriver, LightningGreedyLR, lr_scheduler_config

BATCHES_PER_EPOCH = 6


def regression_loader(seed: int) -> torch.utils.data.DataLoader:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(BATCHES_PER_EPOCH * 8, 8, generator=g)
    y = x @ torch.linspace(-1, 1, 8) + 0.1 * torch.randn(len(x), generator=g)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y[:, None]), batch_size=8)


class TinyRegressor(pl.LightningModule):
    def __init__(self, monitor: str = "train_loss", interval: str = "step", log_val: bool = True,
                 **greedy):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Linear(8, 1)
        self.monitor, self.interval, self.log_val = monitor, interval, log_val
        self.greedy = {"factor": 0.8, "patience": 0, "window": 1, "max_lr": 1.0, **greedy}
        self.train_losses: list[float] = []
        self.val_losses: list[float] = []
        self.lrs: list[float] = []  # after each batch
        self.used_lrs: list[float] = []  # by each batch

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        self.train_losses.append(float(loss.detach()))
        self.used_lrs.append(self.trainer.optimizers[0].param_groups[0]["lr"])
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.lrs.append(self.trainer.optimizers[0].param_groups[0]["lr"])

    def validation_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        if self.log_val:
            self.log("val_loss", loss)
        return loss

    def on_validation_epoch_end(self):
        if self.log_val and "val_loss" in self.trainer.callback_metrics:
            self.val_losses.append(float(self.trainer.callback_metrics["val_loss"]))

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=0.05)
        config = lr_scheduler_config(self, opt, monitor=self.monitor, interval=self.interval,
                                     **self.greedy)
        return {"optimizer": opt, "lr_scheduler": config}


def trainer(tmp_path, **kw) -> pl.Trainer:
    base = dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path,
                num_sanity_val_steps=0)
    base.update(kw)
    return pl.Trainer(**base)


def greedy_of(t: pl.Trainer) -> LightningGreedyLR:
    return t.lr_scheduler_configs[0].scheduler


def test_per_step_training_loss_mode_one_step_per_optimizer_step(tmp_path):
    model = TinyRegressor()
    t = trainer(tmp_path, max_epochs=2, accumulate_grad_batches=2, limit_val_batches=0)
    t.fit(model, regression_loader(0))
    sched = greedy_of(t)
    assert t.global_step == BATCHES_PER_EPOCH  # 12 batches / accumulation 2
    assert sched.controller.num_calls == t.global_step == sched.last_epoch
    # Lightning passes the value logged by the last micro-batch of each optimizer step.
    assert sched.controller.last_value == pytest.approx(model.train_losses[-1], rel=1e-6)
    assert len(set(model.lrs)) > 2
    assert t.optimizers[0].param_groups[0]["lr"] == sched.get_last_lr()[0]


def test_total_steps_from_estimated_stepping_batches_and_the_run_anneals(tmp_path):
    model = TinyRegressor()
    t = trainer(tmp_path, max_epochs=4, limit_val_batches=0)
    t.fit(model, regression_loader(0))
    sched = greedy_of(t)
    assert sched.budget.total_steps == t.estimated_stepping_batches == t.global_step == 24
    # The last update ran deep in the final anneal.
    assert model.used_lrs[-1] < 0.2 * sched.stable_lrs[0]


def test_explicit_total_steps_and_the_reactive_rule(tmp_path):
    model = TinyRegressor(total_steps=60, warmup_steps=2)
    t = trainer(tmp_path, max_epochs=1, limit_val_batches=0)
    t.fit(model, regression_loader(0))
    assert greedy_of(t).budget.total_steps == 60
    assert model.used_lrs[:2] == pytest.approx([0.025, 0.05])  # LR warmup (lr 0.05, 2 steps)
    reactive = TinyRegressor(total_steps=None)
    t = trainer(tmp_path, max_epochs=1, limit_val_batches=0)
    t.fit(reactive, regression_loader(0))
    assert greedy_of(t).budget is None
    assert greedy_of(t).controller.num_calls == BATCHES_PER_EPOCH


def test_monitored_metric_mode_steps_once_per_epoch_on_val_loss(tmp_path):
    model = TinyRegressor(monitor="val_loss", interval="epoch", total_steps=None)
    t = trainer(tmp_path, max_epochs=3)
    t.fit(model, regression_loader(0), regression_loader(1))
    sched = greedy_of(t)
    assert sched.controller.num_calls == 3
    assert sched.controller.last_value == pytest.approx(model.val_losses[-1], rel=1e-6)
    # The LR is constant inside an epoch and moves only between epochs.
    per_epoch = [model.lrs[i:i + BATCHES_PER_EPOCH] for i in range(0, len(model.lrs), BATCHES_PER_EPOCH)]
    assert all(len(set(e)) == 1 for e in per_epoch)
    assert per_epoch[0][0] != per_epoch[1][0]


def test_epoch_mode_with_the_budget_uses_the_per_eval_defaults(tmp_path):
    class PerEval(TinyRegressor):
        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=0.05)
            return {"optimizer": opt,
                    "lr_scheduler": lr_scheduler_config(self, opt, monitor="val_loss", interval="epoch")}

    model = PerEval()
    t = trainer(tmp_path, max_epochs=5)  # 30 steps: a 2-step warmup
    t.fit(model, regression_loader(0), regression_loader(1))
    sched = greedy_of(t)
    config = sched.controller.config
    keys = ("window", "patience", "factor", "increase_every", "accelerate", "climb_on_speedup",
            "spike_ceiling")
    assert tuple(getattr(config, k) for k in keys) == tuple(BUDGET_PER_EVAL[k] for k in keys)
    # The per-evaluation floor: a hundredth of the initial LR.
    assert sched.controller.min_lrs == pytest.approx(
        [EVAL_MIN_LR_RATIO * lr for lr in sched.controller.initial_lrs])
    # The training losses training_step returned after the LR warmup reached the brake (its
    # last 50).
    assert sched.brake is not None
    warm = sched.budget.warmup_steps
    assert sched.brake.values() == pytest.approx(model.train_losses[warm:][-50:], rel=1e-6)
    # The envelope's clock is the optimizer step; the decisions follow the epochs.
    assert sched.last_epoch == sched.budget.total_steps == t.global_step == 5 * BATCHES_PER_EPOCH
    assert sched.controller.num_calls == 5
    assert sched.controller.last_value == pytest.approx(model.val_losses[-1], rel=1e-6)
    # ... and the eval mode's LR warmup over the first steps of that budget.
    assert sched.budget.warmup_steps == eval_warmup_steps(t.global_step) > 0
    assert model.used_lrs[0] == pytest.approx(0.05 / warm)
    assert model.used_lrs[0] < model.used_lrs[warm] == pytest.approx(0.05)


def test_epoch_mode_warmup_follows_an_explicit_total_steps_and_can_be_turned_off(tmp_path):
    class Explicit(TinyRegressor):
        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=0.05)
            return {"optimizer": opt, "lr_scheduler": lr_scheduler_config(
                self, opt, monitor="val_loss", interval="epoch", **self.greedy)}

    # 42 steps by default (a 2-step warmup); an explicit budget of 200 steps: 10.
    for i, (greedy, warm) in enumerate((({}, 2), ({"warmup_steps": 0}, 0),
                                        ({"total_steps": 200}, 10))):
        model = Explicit()
        model.greedy = greedy
        t = trainer(tmp_path / str(i), max_epochs=7)
        t.fit(model, regression_loader(0), regression_loader(1))
        assert greedy_of(t).budget.warmup_steps == warm
        assert greedy_of(t).budget.total_steps == greedy.get("total_steps", 7 * BATCHES_PER_EPOCH)


def test_epoch_mode_warmup_guard_rescues_an_lr_that_blows_up_inside_the_warmup(tmp_path):
    class TooLarge(TinyRegressor):
        def configure_optimizers(self):
            # 8 standard-normal features: SGD on the MSE is unstable past an LR of about 1.
            opt = torch.optim.SGD(self.parameters(), lr=5.0)
            return {"optimizer": opt, "lr_scheduler": lr_scheduler_config(
                self, opt, monitor="val_loss", interval="epoch", warmup_steps=30, **self.greedy)}

    finals = {}
    for brake in (None, 1.0):
        model = TooLarge()
        model.greedy = {"brake": brake}
        t = trainer(tmp_path / str(brake), max_epochs=10)
        t.fit(model, regression_loader(0), regression_loader(1))
        finals[brake] = (model.train_losses[-1], greedy_of(t))
    unguarded, (guarded, sched) = finals[None][0], finals[1.0]
    assert finals[None][1].guard is None
    assert not unguarded < 1e3  # blown up (or NaN)
    assert sched.guard.fired and sched.budget.warmup_steps < 30
    assert guarded < 0.1  # the noise floor of the data is 0.01


def test_missing_monitored_metric_names_it_and_greedylr(tmp_path):
    model = TinyRegressor(monitor="val_loss", interval="epoch", log_val=False)
    t = trainer(tmp_path, max_epochs=1)
    with pytest.raises(ValueError, match=r"GreedyLR monitors 'val_loss'.*not available.*train_loss"):
        t.fit(model, regression_loader(0), regression_loader(1))
    # A typo in the per-step mode, and strict=False: a warning per decision, no decision.
    model = TinyRegressor(monitor="train_los")
    t = trainer(tmp_path, max_epochs=1, limit_val_batches=0)
    with pytest.raises(ValueError, match=r"'train_los'.*\['train_loss'\]"):
        t.fit(model, regression_loader(0))

    class Lenient(TinyRegressor):
        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=0.05)
            return {"optimizer": opt, "lr_scheduler": lr_scheduler_config(
                self, opt, monitor="train_los", strict=False)}

    t = trainer(tmp_path, max_epochs=1, limit_val_batches=0)
    with pytest.warns(RuntimeWarning, match="strict=False"):
        t.fit(Lenient(), regression_loader(0))
    assert greedy_of(t).controller.num_calls == 0


def test_a_bare_greedylr_from_configure_optimizers_fails_with_advice(tmp_path):
    """Lightning steps a bare scheduler without the metric: GreedyLR refuses at its first step."""

    class Bare(TinyRegressor):
        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=0.05)
            return {"optimizer": opt, "lr_scheduler": GreedyLR(opt)}

    t = trainer(tmp_path, max_epochs=1, limit_val_batches=0)
    with pytest.raises(TypeError, match=r"lr_scheduler_config\(self, opt\)"):
        t.fit(Bare(), regression_loader(0))


@pytest.mark.parametrize("epoch", [1, 2])  # after steps 12 and 18; the anneal is steps 12-23
def test_resume_from_checkpoint_continues_the_same_schedule(tmp_path, epoch):
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_epochs=1, save_top_k=-1,
                           filename="{epoch}")
    full_model = TinyRegressor(window=3, anneal_fraction=0.5)
    full = trainer(tmp_path, max_epochs=4, limit_val_batches=0, enable_checkpointing=True,
                   callbacks=[ckpt])
    full.fit(full_model, regression_loader(0))
    assert len(set(full_model.lrs)) > 2

    resumed_model = TinyRegressor(window=3, anneal_fraction=0.5)
    resumed = trainer(tmp_path, max_epochs=4, limit_val_batches=0)
    resumed.fit(resumed_model, regression_loader(0), ckpt_path=tmp_path / "ckpt" / f"epoch={epoch}.ckpt")
    assert resumed_model.lrs == full_model.lrs[(epoch + 1) * BATCHES_PER_EPOCH:]
    assert greedy_of(resumed).state_dict() == greedy_of(full).state_dict()


def test_one_driver_per_trainer_across_fits(tmp_path):
    t = trainer(tmp_path, max_epochs=1, limit_val_batches=0)
    t.fit(TinyRegressor(), regression_loader(0))
    t.fit_loop.max_epochs = 2
    t.fit(TinyRegressor(), regression_loader(0))
    drivers = [c for c in t.callbacks if isinstance(c, GreedyLRDriver)]
    assert len(drivers) == 1 and drivers[0].scheduler is greedy_of(t)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"monitor": ""}, "monitor"), ({"interval": "batch"}, "interval"),
     ({"frequency": 0}, "frequency")],
)
def test_invalid_arguments_name_the_parameter(kwargs, name):
    module = TinyRegressor()
    opt = torch.optim.SGD(module.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=name):
        lr_scheduler_config(module, opt, **kwargs)
    with pytest.raises(ValueError, match="optimizer"):
        lr_scheduler_config(module, torch.optim.lr_scheduler.StepLR(opt, 1))


@pytest.mark.filterwarnings("ignore:You're resuming from a checkpoint that ended before")
def test_resume_from_a_mid_epoch_step_checkpoint_is_exact(tmp_path):
    """ModelCheckpoint(every_n_train_steps) saves in on_train_batch_end: the driver must have
    decided on that step before (a checkpoint between the step's tick and its decision would
    resume one decision short)."""
    # Every batch the same: a plain DataLoader does not resume mid-epoch (Lightning warns), so
    # the resumed run may see other batches; here only the scheduler's state can differ.
    one_batch = next(iter(regression_loader(0)))
    data = torch.utils.data.TensorDataset(*(t.repeat(BATCHES_PER_EPOCH, 1) for t in one_batch))
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=4, save_top_k=-1,
                           filename="{step}")
    full_model = TinyRegressor(window=3, anneal_fraction=0.5)
    full = trainer(tmp_path, max_steps=10, limit_val_batches=0, enable_checkpointing=True,
                   callbacks=[ckpt])
    full.fit(full_model, torch.utils.data.DataLoader(data, batch_size=8))
    assert len(set(full_model.lrs)) > 2

    resumed_model = TinyRegressor(window=3, anneal_fraction=0.5)
    resumed = trainer(tmp_path, max_steps=10, limit_val_batches=0)
    resumed.fit(resumed_model, torch.utils.data.DataLoader(data, batch_size=8),
                ckpt_path=tmp_path / "ckpt" / "step=4.ckpt")
    assert greedy_of(resumed).controller.num_calls == greedy_of(full).controller.num_calls == 10
    assert resumed_model.lrs == full_model.lrs[4:]
    assert greedy_of(resumed).state_dict() == greedy_of(full).state_dict()


@pytest.mark.parametrize("strict", [True, False])
def test_epoch_mode_decides_once_per_validation_run(tmp_path, strict):
    """check_val_every_n_epoch=2: no decision after the epochs without validation (a stale
    val_loss would count as "no new best"), none on the sanity check."""
    model = TinyRegressor(monitor="val_loss", interval="epoch", total_steps=None, strict=strict)
    t = trainer(tmp_path, max_epochs=4, check_val_every_n_epoch=2, num_sanity_val_steps=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # strict=False: no skipped-decision warning
        t.fit(model, regression_loader(0), regression_loader(1))
    sched = greedy_of(t)
    assert sched.controller.num_calls == 2  # after epochs 1 and 3
    assert sched.controller.last_value == pytest.approx(model.val_losses[-1], rel=1e-6)
    per_epoch = model.lrs[::BATCHES_PER_EPOCH]  # the LR after each epoch's first batch
    assert per_epoch[1] == per_epoch[0] and per_epoch[3] == per_epoch[2]
    assert per_epoch[2] != per_epoch[1]


def test_epoch_mode_without_validation_decides_every_epoch(tmp_path):
    model = TinyRegressor(monitor="train_loss", interval="epoch", total_steps=None)
    t = trainer(tmp_path, max_epochs=3, limit_val_batches=0)
    t.fit(model, regression_loader(0))
    assert greedy_of(t).controller.num_calls == 3


def test_epoch_mode_missing_metric_after_a_validation_run_says_so(tmp_path):
    model = TinyRegressor(monitor="val_loss", interval="epoch", log_val=False)
    t = trainer(tmp_path, max_epochs=4, check_val_every_n_epoch=2)
    with pytest.raises(ValueError,
                       match=r"'val_loss'.*not available after this epoch's validation run"):
        t.fit(model, regression_loader(0), regression_loader(1))
    assert t.current_epoch == 1  # the first validation, not the epoch before it


def test_resume_from_a_checkpoint_of_a_sparse_validation_is_exact(tmp_path):
    """check_val_every_n_epoch=2: ModelCheckpoint saves at on_validation_end, before the epoch's
    decision, and the resumed run replays that epoch's end without the validation's metrics."""
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_epochs=1, save_top_k=-1,
                           filename="{epoch}")
    full_model = TinyRegressor(monitor="val_loss", interval="epoch")
    full = trainer(tmp_path, max_epochs=6, check_val_every_n_epoch=2, enable_checkpointing=True,
                   callbacks=[ckpt])
    full.fit(full_model, regression_loader(0), regression_loader(1))
    assert greedy_of(full).controller.num_calls == 3

    resumed_model = TinyRegressor(monitor="val_loss", interval="epoch")
    resumed = trainer(tmp_path, max_epochs=6, check_val_every_n_epoch=2)
    resumed.fit(resumed_model, regression_loader(0), regression_loader(1),
                ckpt_path=tmp_path / "ckpt" / "epoch=1.ckpt")
    assert resumed_model.lrs == full_model.lrs[2 * BATCHES_PER_EPOCH:]
    assert greedy_of(resumed).state_dict() == greedy_of(full).state_dict()
