"""Family ``single_neuron``: a two-layer network learning a single-neuron (or few-neuron)
target (Zhao, Bai, Zhang 2024). ``model`` holds the config, data, loss and observables,
``theory`` the sample-size thresholds and the time shift, ``analysis`` the imbalance and
branches, ``plots`` its figure kinds and overlays."""
from __future__ import annotations

from ...family import Family, Variable
from . import model
from .model import Config, padded_n, predict, target  # noqa: F401  (the family's public names)

VARIABLES = (
    Variable("train_loss", "training loss", scale="log"),
    Variable("test_error", "test error (mean squared)", label="test error (MSE)", scale="log"),
    Variable("test_error_rms", "test error (root mean squared)", label="test error (RMS)",
             scale="log"),
    Variable("test_error_max", "test error (max absolute)", label="test error (max. abs.)",
             scale="log"),
    Variable("neuron_size", "neuron size a^2 + |w|^2 + b^2", ("neuron",),
             label=r"neuron size $a_k^2 + \|w_k\|^2 + b_k^2$", scale="log"),
    Variable("balance", "balance a^2 - |w|^2 - b^2", ("neuron",),
             label=r"balance $a_k^2 - \|w_k\|^2 - b_k^2$", scale="linear"),
    Variable("a", "output weight a", ("neuron",), optional=True, label="output weight $a_k$",
             scale="linear"),
    Variable("w", "input weight w", ("neuron", "input"), optional=True,
             label="input weight $w_k$", scale="linear"),
    Variable("b", "bias b", ("neuron",), optional=True, label="bias $b_k$", scale="linear"),
    Variable("c_coeff", "initial coefficient C_k", ("neuron",), kind="info",
             label="initial coefficient $C_k$", scale="linear"),
    Variable("imbalance_ratio", "initial imbalance ratio C/|C|", ("neuron",), kind="info",
             label=r"initial imbalance ratio $C_k/\|C\|$", scale="linear"),
    Variable("g_norm", "data vector norm |g|", kind="info", label=r"data vector norm $\|g\|$"),
    Variable("recovered", "recovered", kind="finalize", scale="linear"),
    Variable("f_grid", "learned function f(x)", ("x_grid",), kind="finalize", optional=True,
             label="learned function $f(x)$", scale="linear"),
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
