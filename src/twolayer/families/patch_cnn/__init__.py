"""Family ``patch_cnn``: benign overfitting of a two-layer ReLU CNN on signal + noise patches
(Shang, Meng, Cao, Zou 2024; Cao 2022, Kou 2023, Meng 2024). ``model`` holds the config, data,
loss and observables, ``theory`` the benign-overfitting conditions, ``plots`` their overlay."""
from __future__ import annotations

from ...family import Family, Variable
from . import model
from .model import Config, filter_signs, patches  # noqa: F401  (the family's public names)

VARIABLES = (
    Variable("train_loss", "training loss (logistic)"),
    Variable("train_error", "training error"),
    Variable("test_error", "test error (noisy label)"),
    Variable("test_error_clean", "test error (clean label)"),
    Variable("margin_min", "smallest margin y f(x)"),
    Variable("margin_mean", "mean margin y f(x)"),
    Variable("weight_norm", "|W| (per bank)", ("bank",)),
    Variable("output_norm", "|v| (per bank)", ("bank",)),
    Variable("signal_learning", "signal learning max <w, j mu>", ("bank",)),
    Variable("signal_learning_mean", "signal learning mean <w, j mu>", ("bank",)),
    Variable("noise_memorization", "noise memorization max <w_y, xi>"),
    Variable("noise_memorization_mean", "noise memorization mean_i max <w_y, xi_i>"),
    Variable("layer_ratio", "layer ratio |w - w(0)| / |v| (mean)"),
    Variable("layer_ratio_min", "layer ratio (min over filters)"),
    Variable("layer_ratio_max", "layer ratio (max over filters)"),
    Variable("balance", "balance |w|^2 + b^2 - v^2 (mean)"),
    Variable("sign_flips", "fraction of filters whose output weight changed sign"),
    Variable("layer_ratio_filter", "layer ratio |w - w(0)| / |v|", ("filter",), optional=True),
    Variable("balance_filter", "balance |w|^2 + b^2 - v^2", ("filter",), optional=True),
    Variable("weight_norm_filter", "|w|", ("filter",), optional=True),
    Variable("output_weight", "output weight v", ("filter",), optional=True),
    Variable("margin_sample", "margin y_i f(x_i)", ("sample",), optional=True),
    Variable("noise_memorization_sample", "noise memorization of sample i", ("sample",),
             optional=True),
    Variable("signal_coeff", "signal coefficient gamma", ("filter", "direction"), optional=True),
    Variable("noise_coeff", "noise coefficient rho", ("filter", "sample"), optional=True),
    Variable("effective_signal_norm", "|mu|", kind="info"),
    Variable("effective_snr", "SNR |mu| / (sigma_p sqrt(d))", kind="info"),
    Variable("coefficient_mode", "trained in coefficient mode", kind="info"),
)


def _family() -> Family:
    from . import plots  # matplotlib only when the family is loaded

    return Family(
        name="patch_cnn", Config=model.Config, setup=model.setup, loss=model.loss,
        observe=model.observe, finalize=model.finalize, predict=model.predict,
        step_sizes=model.step_sizes, inputs=model.inputs, variables=VARIABLES,
        coords=model.coords, setup_shared=model.setup_shared, setup_run=model.setup_run,
        shared_fields=model.SHARED_FIELDS,
        overlays=plots.OVERLAYS, labels=plots.LABELS, doc=__doc__,
        example=dict(input_dim=30, n_train=6, n_test=50, width=2, snr=0.5, max_steps=60,
                     n_checkpoints=6, learning_rate=0.2),
    ).check()


FAMILY = _family()
