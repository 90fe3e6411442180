"""use_greedy_lr with a real transformers.Trainer and a tiny GPT-2 built from a config."""

import json
import warnings

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainerCallback, TrainingArguments

from learnlr.control.schedule import BUDGET_PER_EVAL, EVAL_MIN_LR_RATIO
from learnlr.integrations.transformers import GreedyLRCallback, TrainerGreedyLR, use_greedy_lr

VOCAB, SEQ = 64, 16


class TokenData(torch.utils.data.Dataset):
    """Synthetic next-token data with a learnable pattern (token i+1 = token i + 1 mod VOCAB)."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        starts = torch.randint(0, VOCAB, (n, 1), generator=g)
        self.ids = (starts + torch.arange(SEQ)) % VOCAB

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def tiny_gpt2() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=VOCAB, n_positions=SEQ)
    return GPT2LMHeadModel(config)


def training_args(out_dir, **overrides) -> TrainingArguments:
    base = dict(
        output_dir=str(out_dir), per_device_train_batch_size=4, gradient_accumulation_steps=2,
        max_steps=8, logging_steps=1, save_strategy="no", report_to=[], use_cpu=True, seed=0,
        data_seed=0, disable_tqdm=True, dataloader_num_workers=0, learning_rate=1e-3,
        weight_decay=0.1,
    )
    base.update(overrides)
    return TrainingArguments(**base)


class Recorder(TrainerCallback):
    """Records training forward losses and the LR after each optimizer step."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.micro_losses: list[float] = []
        self.lrs_after_step: list[float] = []
        model.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        if module.training:
            self.micro_losses.append(float(output.loss.detach()))

    def on_step_end(self, args, state, control, optimizer=None, **kwargs):
        self.lrs_after_step.append(optimizer.param_groups[0]["lr"])


class SeenLoss(TrainerCallback):
    """The value of GreedyLR's decision at each optimizer step (window 1: that step's loss)."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def on_step_end(self, args, state, control, lr_scheduler=None, **kwargs):
        self.values.append(lr_scheduler.controller.last_value)


def logged_losses(trainer: Trainer) -> list[float]:
    return [e["loss"] for e in trainer.state.log_history if "loss" in e]


FAST = {"factor": 0.8, "patience": 0, "window": 1, "max_lr": 1.0}


def build(out_dir, greedy_kwargs=None, **arg_overrides):
    """A Trainer with its own optimizer, made to use GreedyLR by use_greedy_lr."""
    model = tiny_gpt2()
    recorder = Recorder(model)
    trainer = Trainer(
        model=model, args=training_args(out_dir, **arg_overrides),
        train_dataset=TokenData(96, seed=1), eval_dataset=TokenData(16, seed=2),
        callbacks=[recorder],
    )
    return use_greedy_lr(trainer, **(FAST if greedy_kwargs is None else greedy_kwargs)), recorder


def callback_of(trainer: Trainer) -> GreedyLRCallback:
    return next(c for c in trainer.callback_handler.callbacks if isinstance(c, GreedyLRCallback))


def used_lrs(trainer: Trainer) -> list[float]:
    """The LR each optimizer step used, from Trainer's own logs."""
    return [e["learning_rate"] for e in trainer.state.log_history if "loss" in e]


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """One training run (8 optimizer steps x 2 micro-batches) shared by the read-only tests."""
    trainer, rec = build(tmp_path_factory.mktemp("hf"))
    trainer.train()
    return trainer, rec


def test_one_decision_per_optimizer_step_under_gradient_accumulation(default_run):
    trainer, rec = default_run
    sched = trainer.lr_scheduler
    assert isinstance(sched, TrainerGreedyLR)
    assert len(rec.micro_losses) == 16  # 8 optimizer steps x 2 micro-batches
    assert sched.controller.num_calls == 8 == sched.last_epoch
    # The metric of the last decision is that step's loss as Trainer logs it: GPT-2 takes
    # num_items_in_batch, so its two micro-batch losses are shares of it that sum to it.
    assert sched.controller.last_value == pytest.approx(logged_losses(trainer)[-1], rel=1e-6)
    assert sched.controller.last_value == pytest.approx(sum(rec.micro_losses[-2:]), rel=1e-5)
    # Trainer's optimizer really runs at our LR, and our LR moved (patience 0, factor 0.8).
    assert len(set(rec.lrs_after_step)) > 2
    assert trainer.optimizer.param_groups[0]["lr"] == sched.get_last_lr()[0]


def test_trainers_own_optimizer_is_kept(default_run, tmp_path):
    trainer, _ = default_run
    assert trainer.lr_scheduler.optimizer is trainer.optimizer
    # Trainer's weight-decay grouping (no decay on biases and LayerNorm) and its AdamW.
    assert [g["weight_decay"] for g in trainer.optimizer.param_groups] == [0.1, 0.0]
    assert all(len(g["params"]) > 0 for g in trainer.optimizer.param_groups)
    assert isinstance(trainer.optimizer.optimizer, torch.optim.AdamW)
    # optim= chooses the optimizer; GreedyLR schedules whichever Trainer built.
    sgd, _ = build(tmp_path, optim="sgd", max_steps=2)
    sgd.train()
    assert isinstance(sgd.optimizer.optimizer, torch.optim.SGD)
    assert sgd.lr_scheduler.optimizer is sgd.optimizer
    assert sgd.lr_scheduler.controller.num_calls == 2


def test_learning_rate_in_trainer_logs_is_ours(default_run):
    trainer, rec = default_run
    # Trainer logs the LR used by each step: the initial LR, then ours after each decision.
    assert used_lrs(trainer) == pytest.approx([1e-3] + rec.lrs_after_step[:-1])


def test_total_steps_is_the_trainers_and_the_run_anneals(default_run, tmp_path):
    trainer, _ = default_run
    budget = trainer.lr_scheduler.budget
    assert budget.total_steps == trainer.state.max_steps == 8 and budget.warmup_steps == 0
    # The last update runs deep in the final anneal, far below GreedyLR's own LR.
    assert used_lrs(trainer)[-1] < 0.2 * trainer.lr_scheduler.stable_lrs[0]
    # Without max_steps, Trainer computes the steps from the epochs: 96 / (4 x 2) = 12.
    epochs, _ = build(tmp_path, max_steps=-1, num_train_epochs=1)
    epochs.train()
    assert epochs.lr_scheduler.budget.total_steps == epochs.state.max_steps == 12


@pytest.mark.parametrize("warmup", [2, 0.25])
def test_warmup_from_training_arguments(tmp_path, warmup):
    """warmup_steps=2, or a ratio: a quarter of max_steps=8."""
    trainer, _ = build(tmp_path, warmup_steps=warmup)
    trainer.train()
    sched = trainer.lr_scheduler
    assert sched.budget.warmup_steps == 2
    used = used_lrs(trainer)
    assert used[:2] == pytest.approx([0.5e-3, 1e-3])  # linear LR warmup
    # The warmup's loss drop is not shown to GreedyLR: decisions start after it.
    assert sched.controller.num_calls == 6


@pytest.mark.parametrize("resume_at", [3, 6])  # 6 is inside the anneal (steps 4-7)
def test_checkpoint_resume_restores_the_scheduler_exactly(tmp_path, resume_at):
    kwargs = {**FAST, "anneal_fraction": 0.5}
    full, rec_full = build(tmp_path / "full", kwargs, save_strategy="steps", save_steps=3)
    full.train()
    ckpt = tmp_path / "full" / f"checkpoint-{resume_at}"
    saved = json.loads(json.dumps(torch.load(ckpt / "scheduler.pt", weights_only=True)))
    assert saved["controller"]["num_calls"] == resume_at

    resumed, rec_res = build(tmp_path / "full", kwargs, save_strategy="no")
    resumed.train(resume_from_checkpoint=str(ckpt))
    assert resumed.lr_scheduler.controller.num_calls == 8
    assert rec_res.lrs_after_step == rec_full.lrs_after_step[resume_at:]
    assert resumed.lr_scheduler.state_dict() == full.lr_scheduler.state_dict()


def test_eval_mode_steps_once_per_evaluation_on_metric_for_best_model(tmp_path):
    trainer, rec = build(
        tmp_path, {"on": "eval", "factor": 0.8, "patience": 0, "max_lr": 1.0,
                   "total_steps": None},
        eval_strategy="steps", eval_steps=2, metric_for_best_model="loss",
    )
    trainer.train()
    evals = [e["eval_loss"] for e in trainer.state.log_history if "eval_loss" in e]
    sched = trainer.lr_scheduler
    assert len(evals) == 4
    assert sched.controller.num_calls == 4
    assert sched.controller.config.mode == "min" and sched.controller.config.window == 1
    assert sched.controller.last_value == pytest.approx(evals[-1])
    # The LR each step used (Trainer's log) changes only after an evaluation (after steps 2, 4, 6).
    used = used_lrs(trainer)
    assert len(used) == 8
    assert all(used[i] == used[i - 1] for i in (1, 3, 5, 7))
    assert all(used[i] > used[i - 1] for i in (2, 4, 6))  # eval loss kept improving: increases
    # and a later trainer.evaluate() outside train() leaves the LR alone
    before = sched.get_last_lr()
    trainer.evaluate()
    assert sched.get_last_lr() == before


def test_eval_mode_warms_up_by_default_and_the_trainer_warmup_wins(tmp_path):
    from learnlr.control.schedule import eval_warmup_steps

    trainer, _ = build(tmp_path, {"on": "eval"}, max_steps=40, eval_strategy="steps",
                       eval_steps=10, metric_for_best_model="loss")
    trainer.train()
    warm = eval_warmup_steps(40)
    assert trainer.lr_scheduler.budget.warmup_steps == warm == 2
    assert used_lrs(trainer)[:3] == pytest.approx([0.5e-3, 1e-3, 1e-3])
    # A Trainer warmup wins over the eval mode's; the per-step mode keeps the Trainer's (none).
    own, _ = build(tmp_path / "own", {"on": "eval"}, max_steps=40, warmup_steps=4,
                   eval_strategy="steps", eval_steps=10, metric_for_best_model="loss")
    own.train()
    assert own.lr_scheduler.budget.warmup_steps == 4
    # The Trainer's warmup is guarded too (the brake's guard on the ramp; it did not fire here:
    # the tiny model's loss falls through it).
    assert own.lr_scheduler.guard is not None and not own.lr_scheduler.guard.fired
    off, _ = build(tmp_path / "off", {"on": "eval", "warmup_steps": 0}, max_steps=40,
                   eval_strategy="steps", eval_steps=10, metric_for_best_model="loss")
    off.train()
    assert off.lr_scheduler.budget.warmup_steps == 0 and off.lr_scheduler.guard is None
    step_mode, _ = build(tmp_path / "step", {}, max_steps=40)
    step_mode.train()
    assert step_mode.lr_scheduler.budget.warmup_steps == 0


def test_eval_mode_with_the_budget_uses_the_per_eval_defaults(tmp_path):
    trainer, rec = build(tmp_path, {"on": "eval"}, max_steps=10, warmup_steps=2,
                         eval_strategy="steps", eval_steps=2, metric_for_best_model="loss")
    trainer.train()
    sched = trainer.lr_scheduler
    config = sched.controller.config
    keys = ("window", "patience", "factor", "increase_every", "accelerate", "climb_on_speedup",
            "spike_ceiling")
    assert tuple(getattr(config, k) for k in keys) == tuple(BUDGET_PER_EVAL[k] for k in keys)
    # The per-evaluation floor: a hundredth of the initial LR.
    assert sched.controller.min_lrs == pytest.approx(
        [EVAL_MIN_LR_RATIO * lr for lr in sched.controller.initial_lrs])
    # The brake saw the training loss (as Trainer logs it) of each of the 8 updates after the
    # warmup.
    assert sched.brake is not None
    assert sched.brake.values() == pytest.approx(logged_losses(trainer)[2:], rel=1e-5)
    # The envelope follows the 10 optimizer steps; decisions follow the evaluations after the
    # warmup (after steps 4, 6, 8, 10; the one after step 2 judges a warmup update).
    assert sched.last_epoch == sched.budget.total_steps == 10
    assert sched.controller.num_calls == 4
    used = used_lrs(trainer)
    assert used[:2] == pytest.approx([0.5e-3, 1e-3])
    assert used[-1] < 0.2 * sched.stable_lrs[0]  # annealed (steps 8-9)


def test_eval_mode_direction_from_greater_is_better(tmp_path):
    trainer, _ = build(tmp_path, {"on": "eval"}, metric_for_best_model="accuracy",
                       eval_strategy="steps")
    sched = trainer.create_scheduler(num_training_steps=8, optimizer=trainer.create_optimizer())
    assert sched.controller.config.mode == "max"
    with pytest.raises(ValueError, match="greater_is_better"):
        build(tmp_path, {"on": "eval", "mode": "min"}, metric_for_best_model="accuracy",
              eval_strategy="steps")
    with pytest.raises(ValueError, match="metric_for_best_model"):
        build(tmp_path, {"on": "eval"})


def test_missing_eval_metric_is_a_clear_error(tmp_path):
    trainer, _ = build(tmp_path, {"on": "eval"}, eval_strategy="steps", eval_steps=2,
                       metric_for_best_model="bleu")
    with pytest.raises(ValueError, match="eval_bleu.*eval_loss"):
        trainer.train()


def test_callback_without_use_greedy_lr_is_a_loud_error(tmp_path):
    """Trainer would silently run its own linear decay; GreedyLR would never act."""
    model = tiny_gpt2()
    trainer = Trainer(model=model, args=training_args(tmp_path, max_steps=2),
                      train_dataset=TokenData(32, 1), callbacks=[GreedyLRCallback(**FAST)])
    with pytest.raises(ValueError, match=r"LambdaLR \(lr_scheduler_type='linear'\).*use_greedy_lr"):
        trainer.train()
    # The same callback, installed: use_greedy_lr finds it.
    use_greedy_lr(trainer)
    trainer.train()
    assert trainer.lr_scheduler.controller.num_calls == 2
    assert callback_of(trainer).scheduler is trainer.lr_scheduler
    with pytest.raises(ValueError, match="already holds a GreedyLRCallback"):
        use_greedy_lr(trainer, factor=0.8)
    # That callback (which has built a scheduler) in a new Trainer without use_greedy_lr: loud too.
    again = Trainer(model=model, args=training_args(tmp_path, max_steps=2),
                    train_dataset=TokenData(32, 1), callbacks=[callback_of(trainer)])
    with pytest.raises(ValueError, match="use_greedy_lr"):
        again.train()


def test_a_scheduler_in_optimizers_is_refused(tmp_path):
    model = tiny_gpt2()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    other = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    trainer = Trainer(model=model, args=training_args(tmp_path), train_dataset=TokenData(32, 1),
                      optimizers=(opt, other))
    with pytest.raises(ValueError, match=r"optimizers=\(optimizer, None\)"):
        use_greedy_lr(trainer)
    # Your own optimizer is fine: optimizers=(opt, None).
    trainer = use_greedy_lr(Trainer(model=model, args=training_args(tmp_path, max_steps=2),
                                    train_dataset=TokenData(32, 1), optimizers=(opt, None)))
    trainer.train()
    assert trainer.lr_scheduler.optimizer.optimizer is opt


def test_a_loss_computed_outside_the_model_is_captured_and_record_loss_still_works(tmp_path):
    class OwnLoss(Trainer):
        """Computes the loss outside the model (as label-smoothing setups do)."""

        record = False
        loss_is_scaled_for_ga = False  # a micro-batch mean: Trainer divides it by accumulation

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs.pop("labels")
            logits = model(**inputs).logits
            loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten())
            if self.record and model.training:
                self.lr_scheduler.record_loss(loss)
            return loss

    def own_loss_trainer(**greedy):
        trainer = OwnLoss(model=tiny_gpt2(), args=training_args(tmp_path, max_steps=2),
                          train_dataset=TokenData(32, 1))
        return use_greedy_lr(trainer, patience=0, window=1, max_lr=1.0, **greedy)

    # The loss training_step returns is recorded, whoever computed it.
    seen = SeenLoss()
    trainer = own_loss_trainer()
    trainer.add_callback(seen)
    trainer.train()
    assert seen.values == pytest.approx(logged_losses(trainer), rel=1e-5)
    assert isinstance(trainer, OwnLoss)  # use_greedy_lr keeps the Trainer's own subclass
    # capture_model_loss=False: the losses come from record_loss, or it is a clear error.
    with pytest.raises(RuntimeError, match="record_loss"):
        own_loss_trainer(capture_model_loss=False).train()
    trainer = own_loss_trainer(capture_model_loss=False)
    trainer.record = True
    trainer.train()
    assert trainer.lr_scheduler.controller.num_calls == 2


def test_repeated_steps_for_one_optimizer_step_act_once():
    """AcceleratedScheduler steps a prepared scheduler once per process; only the first acts."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = TrainerGreedyLR(opt, patience=0, window=1, max_lr=1.0)
    for loss in (3.0, 2.0, 1.0):
        sched.begin_optimizer_step()
        sched.record_loss(torch.tensor(loss))
        for _ in range(4):  # as with num_processes=4
            sched.step()
    assert sched.controller.num_calls == 3
    assert sched.get_last_lr()[0] == pytest.approx(0.1 / 0.95**3)


@pytest.mark.parametrize(("kwargs", "name"), [({"on": "epoch"}, "on"), ({"mode": "max"}, "mode"),
                                              ({"factor": 2.0}, "factor"),
                                              ({"total_steps": 0}, "total_steps"),
                                              ({"warmup_steps": -1}, "warmup_steps")])
def test_invalid_arguments_name_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        GreedyLRCallback(**kwargs)


def test_renamed_and_unknown_arguments_are_type_errors():
    with pytest.raises(TypeError, match="warmup_steps"):
        GreedyLRCallback(warmup=3)
    with pytest.raises(TypeError, match="facter"):
        GreedyLRCallback(facter=0.9)


@pytest.mark.parametrize("loss_kwargs", [True, False])
def test_greedylr_sees_the_loss_trainer_logs_under_gradient_accumulation(tmp_path, loss_kwargs):
    """With loss kwargs (GPT-2's default) Trainer passes num_items_in_batch: a micro-batch's loss
    is its share of the step's loss (they sum to it); without, a micro-batch mean (averaged).
    20 samples, batch 4, accumulation 4: steps of 4 micro-batches and of 1."""
    model = tiny_gpt2()
    if not loss_kwargs:
        model.accepts_loss_kwargs = False  # what Trainer reads; the loss is then a batch mean
    seen = SeenLoss()
    args = training_args(tmp_path, gradient_accumulation_steps=4, max_steps=4)
    trainer = Trainer(model=model, args=args, train_dataset=TokenData(20, 1), callbacks=[seen])
    use_greedy_lr(trainer, **FAST).train()
    assert trainer.model_accepts_loss_kwargs is loss_kwargs
    assert len(logged_losses(trainer)) == 4
    assert seen.values == pytest.approx(logged_losses(trainer), rel=1e-5)


def test_eval_mode_without_evaluations_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"eval_strategy='no'.*'steps'.*'epoch'.*on='train_loss'"):
        build(tmp_path, {"on": "eval"}, metric_for_best_model="loss")
    # The same from the callback given to Trainer: at Trainer(...), not after a silent train().
    args = training_args(tmp_path, metric_for_best_model="loss")
    with pytest.raises(ValueError, match="eval_strategy"):
        Trainer(model=tiny_gpt2(), args=args, train_dataset=TokenData(32, 1),
                callbacks=[GreedyLRCallback(on="eval")])


def test_eval_mode_with_several_eval_datasets_decides_on_the_metrics_dataset(tmp_path):
    """Trainer evaluates each dataset of a dict apart (one on_evaluate per dataset)."""

    def trainer_for(metric):
        args = training_args(tmp_path, eval_strategy="steps", eval_steps=2,
                             metric_for_best_model=metric)
        trainer = Trainer(model=tiny_gpt2(), args=args, train_dataset=TokenData(96, 1),
                          eval_dataset={"a": TokenData(16, 2), "b": TokenData(16, 3)})
        return use_greedy_lr(trainer, on="eval", factor=0.8, patience=0, max_lr=1.0,
                             total_steps=None)

    trainer = trainer_for("eval_a_loss")
    trainer.train()
    evals = [e["eval_a_loss"] for e in trainer.state.log_history if "eval_a_loss" in e]
    assert len(evals) == 4
    assert trainer.lr_scheduler.controller.num_calls == 4
    assert trainer.lr_scheduler.controller.last_value == pytest.approx(evals[-1])
    # A metric in none of the datasets' evaluations is still an error (Trainer's own check,
    # once all datasets are evaluated).
    with pytest.raises(KeyError, match=r"'eval_c_loss'.*eval_a_loss.*eval_b_loss"):
        trainer_for("eval_c_loss").train()


def test_replacing_a_chosen_lr_scheduler_type_warns(tmp_path):
    with pytest.warns(UserWarning, match=r"lr_scheduler_type='cosine'"):
        build(tmp_path, lr_scheduler_type="cosine")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build(tmp_path)  # Trainer's default, 'linear': nothing the user chose
    assert not [w for w in caught if "lr_scheduler_type" in str(w.message)]
