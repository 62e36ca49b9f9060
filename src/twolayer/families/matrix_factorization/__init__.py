"""Family ``matrix_factorization``: a two-layer linear network f = W2 W1 completing a
low-rank k x k matrix from some of its entries. ``model`` holds the config, data, loss and
observables, ``theory`` the optimistic sample size r (2k - r), ``plots`` its overlay."""
from __future__ import annotations

from ...family import Family, Variable
from . import model
from .model import Config, predict, target_factors, target_params  # noqa: F401

VARIABLES = (
    Variable("train_loss", "training loss (1/2 sum over observed entries)",
             label=r"training loss $\frac{1}{2}\sum_{\Omega}$", scale="log"),
    Variable("test_error", "test MSE (all entries)", scale="log"),
    Variable("test_error_unobserved", "test MSE (unobserved entries)", scale="log"),
    Variable("balance", "balance |W1 W1^T - W2^T W2|_F",
             label=r"balance $\|W_1 W_1^\top - W_2^\top W_2\|_F$", scale="log"),
    Variable("product_norm", "|W2 W1|_F", label=r"$\|W_2 W_1\|_F$"),
    Variable("min_observed_per_line", "fewest observed entries in a row or column",
             kind="info", scale="linear"),
    Variable("recovered", "recovered", kind="finalize", scale="linear"),
)


def _family() -> Family:
    from . import plots  # matplotlib only when the family is loaded

    return Family(
        name="matrix_factorization", Config=model.Config, setup=model.setup, loss=model.loss,
        observe=model.observe, finalize=model.finalize, predict=model.predict,
        residuals=model.residuals, inputs=model.inputs, variables=VARIABLES,
        overlays=plots.OVERLAYS, labels=plots.LABELS, train_samples=model.train_samples,
        example=dict(size=4, width=4, target_rank=2, n_train=12, init_scale=0.1,
                     max_steps=200, n_checkpoints=6),
        doc=__doc__,
    ).check()


FAMILY = _family()
