"""The authors' learning-rate schedule compressed to any number of epochs (scheduler=multistep_scaled)."""

import pytest
import torch

from node_experiments.training.schedules import PAPER_FRACTIONS, FractionalMultiStepLR, milestones_at


def test_160_epochs_is_the_authors_schedule():
    assert milestones_at(PAPER_FRACTIONS, 160) == [60, 100, 140]


@pytest.mark.parametrize(("epochs", "milestones"), [(10, [4, 6, 9]), (16, [6, 10, 14]), (2, [1, 1, 1])])
def test_milestones_fall_inside_training(epochs, milestones):
    assert milestones_at(PAPER_FRACTIONS, epochs) == milestones


def test_rate_drops_tenfold_at_each_milestone():
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    scheduler = FractionalMultiStepLR(optimizer, epochs=10)
    rates = []
    for _ in range(10):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx([0.1] * 4 + [0.01] * 2 + [0.001] * 3 + [0.0001])


@pytest.mark.parametrize(("fractions", "epochs"), [((0.5, 0.25), 10), ((0.0, 0.5), 10), ((0.5,), 0), ((1.0,), 10)])
def test_bad_arguments_are_refused(fractions, epochs):
    with pytest.raises(ValueError):
        milestones_at(fractions, epochs)
