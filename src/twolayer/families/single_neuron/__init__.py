"""Family ``single_neuron``: a two-layer network learning a single-neuron (or few-neuron)
target (Zhao, Bai, Zhang 2024). ``model`` holds the config, data, loss and observables,
``theory`` the sample-size thresholds and the time shift, ``analysis`` the imbalance and
branches, ``plots`` its figure kinds and overlays."""
from __future__ import annotations

from ...family import Family, Variable
from . import model
from .model import Config, padded_n, predict, target  # noqa: F401  (the family's public names)

VARIABLES = (
    Variable("train_loss", "training loss"),
    Variable("test_error", "test error (mean squared)"),
    Variable("test_error_rms", "test error (root mean squared)"),
    Variable("test_error_max", "test error (max absolute)"),
    Variable("neuron_size", "neuron size a^2 + |w|^2 + b^2", ("neuron",)),
    Variable("balance", "balance a^2 - |w|^2 - b^2", ("neuron",)),
    Variable("a", "output weight a", ("neuron",), optional=True),
    Variable("w", "input weight w", ("neuron", "input"), optional=True),
    Variable("b", "bias b", ("neuron",), optional=True),
    Variable("c_coeff", "initial coefficient C_k", ("neuron",), kind="info"),
    Variable("imbalance_ratio", "initial imbalance ratio C/|C|", ("neuron",), kind="info"),
    Variable("g_norm", "data vector norm |g|", kind="info"),
    Variable("recovered", "recovered", kind="finalize"),
    Variable("f_grid", "learned function f(x)", ("x_grid",), kind="finalize", optional=True),
)


def _family() -> Family:
    from . import plots  # matplotlib only when the family is loaded

    return Family(
        name="single_neuron", Config=model.Config, setup=model.setup, loss=model.loss,
        observe=model.observe, finalize=model.finalize, predict=model.predict,
        residuals=model.residuals, variables=VARIABLES, coords=model.coords,
        figures=plots.FIGURES, overlays=plots.OVERLAYS, labels=plots.LABELS,
        run_figure=plots.run_figure, doc=__doc__,
        example=dict(width=2, n_train=4, sampling="gaussian", init_scale=0.1, learning_rate=0.05,
                     max_steps=200,
                     n_checkpoints=6),
    ).check()


FAMILY = _family()
