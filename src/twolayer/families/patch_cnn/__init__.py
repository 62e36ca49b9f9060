"""Family ``patch_cnn``: benign overfitting of a two-layer ReLU CNN on signal + noise patches
(Shang, Meng, Cao, Zou 2024; Cao 2022, Kou 2023, Meng 2024). ``model`` holds the config, data,
loss and observables, ``theory`` the benign-overfitting conditions, ``plots`` their overlay."""
from __future__ import annotations

from ...family import Family, Variable
from . import model
from .model import Config, filter_signs, patches  # noqa: F401  (the family's public names)

VARIABLES = (
    Variable("train_loss", "training loss (logistic)", scale="log"),
    Variable("train_error", "training error", scale="linear"),
    Variable("test_error", "test error (noisy label)", scale="linear"),
    Variable("test_error_clean", "test error (clean label)", scale="linear"),
    Variable("margin_min", "smallest margin y f(x)", label=r"smallest margin $\min_i y_i f(x_i)$",
             scale="linear"),
    Variable("margin_mean", "mean margin y f(x)", label="mean margin $y_i f(x_i)$",
             scale="linear"),
    Variable("weight_norm", "|W| (per bank)", ("bank",), label=r"$\|W\|$ (per bank)"),
    Variable("output_norm", "|v| (per bank)", ("bank",), label=r"$\|v\|$ (per bank)"),
    Variable("signal_learning", "signal learning max <w, j mu>", ("bank",),
             label=r"signal learning $\max\, \langle w_{j,r}, j\mu\rangle$"),
    Variable("signal_learning_mean", "signal learning mean <w, j mu>", ("bank",),
             label=r"signal learning $\mathrm{mean}_r \langle w_{j,r}, j\mu\rangle$"),
    Variable("noise_memorization", "noise memorization max <w_y, xi>",
             label=r"noise memorization $\max \langle w_{y}, \xi\rangle$"),
    Variable("noise_memorization_mean", "noise memorization mean_i max <w_y, xi_i>",
             label=r"noise memorization $\mathrm{mean}_i \max \langle w_{y_i}, \xi_i\rangle$"),
    Variable("layer_ratio", "layer ratio |w - w(0)| / |v| (mean)",
             label=r"layer ratio $\|w - w(0)\| / |v|$ (mean)"),
    Variable("layer_ratio_min", "layer ratio (min over filters)"),
    Variable("layer_ratio_max", "layer ratio (max over filters)"),
    Variable("balance", "balance |w|^2 + b^2 - v^2 (mean)",
             label=r"balance $\|w\|^2 + b^2 - v^2$ (mean)", scale="linear"),
    Variable("sign_flips", "fraction of filters whose output weight changed sign",
             scale="linear"),
    Variable("layer_ratio_filter", "layer ratio |w - w(0)| / |v|", ("filter",), optional=True,
             label=r"layer ratio $\|w - w(0)\| / |v|$"),
    Variable("balance_filter", "balance |w|^2 + b^2 - v^2", ("filter",), optional=True,
             label=r"balance $\|w\|^2 + b^2 - v^2$", scale="linear"),
    Variable("weight_norm_filter", "|w|", ("filter",), optional=True,
             label=r"filter norm $\|w\|$"),
    Variable("output_weight", "output weight v", ("filter",), optional=True,
             label="output weight $v$", scale="linear"),
    Variable("margin_sample", "margin y_i f(x_i)", ("sample",), optional=True,
             label="margin $y_i f(x_i)$", scale="linear"),
    Variable("noise_memorization_sample", "noise memorization of sample i", ("sample",),
             optional=True, label="noise memorization of sample $i$"),
    Variable("signal_coeff", "signal coefficient gamma", ("filter", "direction"), optional=True,
             label=r"signal coefficient $\gamma$", scale="linear"),
    Variable("noise_coeff", "noise coefficient rho", ("filter", "sample"), optional=True,
             label=r"noise coefficient $\rho$", scale="linear"),
    Variable("effective_signal_norm", "|mu|", kind="info", label=r"signal norm $\|\mu\|$"),
    Variable("effective_snr", "SNR |mu| / (sigma_p sqrt(d))", kind="info",
             label=r"SNR $\|\mu\| / (\sigma_p \sqrt{d})$"),
    Variable("coefficient_mode", "trained in coefficient mode", kind="info", scale="linear"),
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
