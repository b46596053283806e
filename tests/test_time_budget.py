"""TimeBudget ends training after the epoch that passes the budget, and only then."""
import keras
import numpy as np
import pytest

from resprunet.training.time_budget import TimeBudget


def _fit(callback: TimeBudget, epochs: int) -> int:
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    history = model.fit(x, x[:, :1], epochs=epochs, batch_size=8, verbose=0, callbacks=[callback])
    return len(history.history["loss"])


def test_zero_minutes_stops_after_the_first_epoch() -> None:
    budget = TimeBudget(0)
    assert _fit(budget, epochs=5) == 1
    assert budget.stopped_epoch == 0


def test_a_budget_not_reached_runs_every_epoch() -> None:
    budget = TimeBudget(60)
    assert _fit(budget, epochs=4) == 4
    assert budget.stopped_epoch is None


@pytest.mark.parametrize("minutes", [-1.0, float("nan")])
def test_a_negative_or_undefined_budget_is_refused(minutes: float) -> None:
    with pytest.raises(ValueError, match="time budget"):
        TimeBudget(minutes)
