"""The schedule: LR (step, cosine, constant, warm-up), stages, tying and companion weights."""

from __future__ import annotations

import dataclasses

import pytest

from auxtrain.schedule import (
    TrainingSchedule,
    decay_weight,
    is_stage_two,
    learning_rate,
    stage_two_epoch,
    step_milestones,
    warmup_factor,
)


def test_step_schedule_matches_the_authors_recipe_at_210_epochs():
    assert step_milestones(210) == [60, 140, 180]
    lrs = [learning_rate(e, base_lr=0.1, epochs=210) for e in (0, 59, 60, 139, 140, 179, 180, 209)]
    assert lrs == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001, 0.0001, 0.0001])
    assert stage_two_epoch(210) == 180 and not is_stage_two(179, 210) and is_stage_two(180, 210)


def test_schedule_scales_with_the_number_of_epochs():
    assert step_milestones(21) == [6, 14, 18]
    assert stage_two_epoch(21) == 18
    assert stage_two_epoch(21, start=3) == 3
    assert learning_rate(14, base_lr=1.0, epochs=21) == pytest.approx(0.01)


def test_no_step_drop_applies_at_epoch_0():
    # Unclamped, a 1-epoch run rounds the first milestone to 0 and trains at lr / 10 throughout.
    assert step_milestones(1) == [1, 1, 1]
    assert learning_rate(0, base_lr=0.1, epochs=1) == 0.1
    assert TrainingSchedule(epochs=1, base_lr=0.1).epoch_lr(0) == 0.1
    # Every other length keeps the scaled milestones exactly (none of them rounded to 0).
    expected = {210: [60, 140, 180], 21: [6, 14, 18], 12: [3, 8, 10], 7: [2, 5, 6], 2: [1, 1, 2]}
    assert {e: step_milestones(e) for e in expected} == expected
    assert all(step_milestones(e) == [round(f * e) for f in (60 / 210, 140 / 210, 180 / 210)]
               for e in range(2, 400))


def test_default_stage_two_gets_at_least_the_last_epoch():
    # 6/7 of 2 or 3 epochs rounds to the end of the run: stage two would never start.
    assert [stage_two_epoch(e) for e in (2, 3)] == [1, 2]
    s = TrainingSchedule(epochs=3, base_lr=0.1, gamma=0.5)
    assert [s.stage(e) for e in range(3)] == [1, 1, 2] and s.tying_weight(2) == 0.5
    assert stage_two_epoch(1) == 1  # a 1-epoch run has no stage two unless asked (--stage-two-start 0)
    # Where 6/7 of the run already starts before its end, nothing changes.
    assert {e: stage_two_epoch(e) for e in (7, 12, 21, 210)} == {7: 6, 12: 10, 21: 18, 210: 180}
    assert all(stage_two_epoch(e) == round(6 / 7 * e) for e in range(4, 400))


def test_warmup_rises_linearly_then_stays_at_one():
    assert [warmup_factor(0, s, 4, 1) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert warmup_factor(1, 0, 4, 1) == 1.0 and warmup_factor(0, 0, 4, 0) == 1.0
    assert warmup_factor(1, 1, 4, 2) == pytest.approx(6 / 8)


def test_cosine_and_constant_schedules():
    assert learning_rate(0, base_lr=0.1, epochs=10, schedule="cosine") == pytest.approx(0.1)
    assert learning_rate(5, base_lr=0.1, epochs=10, schedule="cosine") == pytest.approx(0.05)
    assert learning_rate(9, base_lr=0.1, epochs=10, schedule="constant") == 0.1
    with pytest.raises(ValueError, match="schedule must be one of"):
        learning_rate(0, base_lr=0.1, epochs=10, schedule="linear")
    with pytest.raises(ValueError, match="epochs"):
        step_milestones(0)


def test_decay_weight_schedule():
    assert decay_weight(0.3, 0, 10) == pytest.approx(0.3)
    assert decay_weight(0.3, 5, 10) == pytest.approx(0.15)
    assert decay_weight(0.3, 10, 10) == 0.0
    assert decay_weight(0.3, 12, 10) == 0.0
    assert decay_weight(1.0, 2.5, 10, factor=0.1) == pytest.approx(0.075)
    with pytest.raises(ValueError, match="total_epochs"):
        decay_weight(0.3, 0, 0)



def test_training_schedule_owns_every_time_dependent_number():
    s = TrainingSchedule(epochs=7, base_lr=0.1, kind="step", warmup_epochs=1, gamma=2.0,
                         companion_weight=0.3, companion_decay=True)
    assert [s.stage(e) for e in range(7)] == [1, 1, 1, 1, 1, 1, 2]  # 6/7 of 7 epochs
    assert [s.tying_weight(e) for e in (5, 6)] == [0.0, 2.0]
    assert s.lr(0, 0, 4) == pytest.approx(0.1 / 4) and s.lr(1, 0, 4) == s.epoch_lr(1) == 0.1
    assert s.epoch_lr(6) == pytest.approx(learning_rate(6, base_lr=0.1, epochs=7))
    assert s.companion_weight_at(0) == pytest.approx(0.3)
    assert s.companion_weight_at(3.5) == pytest.approx(0.15)
    flat = dataclasses.replace(s, companion_decay=False, stage_two_start=2)
    assert flat.companion_weight_at(6) == 0.3 and flat.stage(2) == 2 and flat.stage(1) == 1
    with pytest.raises(ValueError, match="schedule must be one of"):
        TrainingSchedule(epochs=3, base_lr=0.1, kind="linear")
    with pytest.raises(ValueError, match="stage_two_start"):
        TrainingSchedule(epochs=3, base_lr=0.1, stage_two_start=-1)


def test_training_schedule_refuses_a_stage_two_start_past_the_run():
    assert TrainingSchedule(epochs=3, base_lr=0.1, stage_two_start=2).stage(2) == 2
    for start in (3, 7):
        with pytest.raises(ValueError, match=rf"stage_two_start {start} .*3-epoch run \(0 to 2\)"):
            TrainingSchedule(epochs=3, base_lr=0.1, stage_two_start=start)
    flat = TrainingSchedule(epochs=3, base_lr=0.1, stage_two_start=3, gamma=0.0)  # stage two does nothing
    assert [flat.tying_weight(e) for e in range(3)] == [0.0, 0.0, 0.0]


def test_cosine_stage_two_pulls_as_hard_per_step_as_the_step_schedule():
    # The tying's pull per SGD step is lr * weight: under cosine it must equal the step schedule's.
    step = TrainingSchedule(epochs=210, base_lr=0.1, kind="step", gamma=1.0)
    cosine = TrainingSchedule(epochs=210, base_lr=0.1, kind="cosine", gamma=1.0)
    assert cosine.stage_two_start is None and stage_two_epoch(210) == 180
    assert cosine.epoch_lr(180) / 0.1 == pytest.approx(0.0495, abs=1e-4)  # the defect: 4.95%, not 0.1%
    for epoch in (180, 195, 209):
        assert cosine.epoch_lr(epoch) * cosine.tying_weight(epoch) == pytest.approx(
            step.epoch_lr(epoch) * step.tying_weight(epoch))
    assert cosine.tying_weight(180) == pytest.approx(1e-4 / 0.00495, rel=1e-2)  # ~50x weaker than gamma
    assert cosine.tying_weight(179) == 0.0 and step.tying_weight(180) == 1.0  # step recipe unchanged
    constant = TrainingSchedule(epochs=7, base_lr=0.1, kind="constant", gamma=2.0)
    assert constant.tying_weight(6) == pytest.approx(2.0 * 1e-3)  # 3 drops of /10 by epoch 6 of 7
    # "none" keeps gamma as given (the old behaviour, for the ablation); bad values are refused.
    assert dataclasses.replace(cosine, tying_scale="none").tying_weight(180) == 1.0
    with pytest.raises(ValueError, match="tying_scale"):
        TrainingSchedule(epochs=3, base_lr=0.1, tying_scale="ramp")
