"""Theory of the patch-CNN studies, drawn on their phase diagrams: the benign-overfitting
conditions as quantities of the settings.

Notation: n training samples, d input dimension, |mu| signal norm, sigma_p noise standard
deviation, SNR = |mu| / (sigma_p sqrt(d)), q the relu power. Formulas take numbers or
numpy arrays (which broadcast)."""
from __future__ import annotations

import numpy as np


# Conditions "benign iff Q >~ C" of the patch-CNN studies, each as the quantity Q of the
# settings; a phase diagram draws the curve Q = C (C a user constant: the papers fix
# it only up to constants and log factors).
def snr_of(signal_norm, noise_std, input_dim):
    """SNR = |mu| / (sigma_p sqrt(d))."""
    return np.asarray(signal_norm) / (np.asarray(noise_std) * np.sqrt(input_dim))


def kou_quantity(n_train, signal_norm, noise_std, input_dim):
    """Kou et al. 2023 / Meng et al. 2024 (relu, fixed output): n |mu|^4 / (sigma_p^4 d);
    benign iff it is >~ C, with test error <= p + exp(-Q / C') (p the label-flip rate)."""
    return (np.asarray(n_train) * np.asarray(signal_norm, float) ** 4
            / (np.asarray(noise_std, float) ** 4 * np.asarray(input_dim)))


def cao_quantity(n_train, snr, relu_power):
    """Cao et al. 2022 (relu^q, fixed output): n SNR^q; benign iff >~ C."""
    return np.asarray(n_train) * np.asarray(snr, float) ** np.asarray(relu_power, float)


def small_init_quantity(n_train, snr):
    """CONJECTURE of this toolkit, not a statement of Shang et al. 2024: with a small output
    init the two layers grow jointly and the model is effectively 2-homogeneous, so
    n SNR^2 >~ C is the natural candidate condition. Drawn to be tested against the data."""
    return np.asarray(n_train) * np.asarray(snr, float) ** 2


CONDITIONS = {
    "kou": (r"$n \|\mu\|^4 / (\sigma_p^4 d) = C$ (Kou 2023; Meng 2024, XOR)", kou_quantity),
    "cao": (r"$n\,\mathrm{SNR}^q = C$ (Cao 2022)", cao_quantity),
    "small_init": (r"$n\,\mathrm{SNR}^2 = C$ (conjecture, small output init.)",
                   small_init_quantity),
}
"""The benign-overfitting conditions by name: (legend label in matplotlib mathtext,
function giving Q). The
``heatmap`` figure's ``overlays`` name them."""


def benign_quantity(condition: str, *, n_train, input_dim, noise_std=1.0, signal_norm=None,
                    snr=None, relu_power=2.0):
    """The quantity Q of ``condition`` (a key of ``CONDITIONS``: "kou", "cao", "small_init")
    from the settings; give the signal as exactly one of ``signal_norm`` and ``snr`` (the
    other follows from |mu| = SNR sigma_p sqrt(d)); ``relu_power`` is q of "cao". Arrays
    broadcast. Raises ValueError for an unknown condition or when both or neither signal
    argument is given."""
    if condition not in CONDITIONS:
        raise ValueError(f"unknown condition '{condition}'; allowed: {', '.join(CONDITIONS)}")
    if (signal_norm is None) == (snr is None):
        raise ValueError("give exactly one of signal_norm and snr")
    if snr is None:
        snr = snr_of(signal_norm, noise_std, input_dim)
    else:
        signal_norm = np.asarray(snr, float) * np.asarray(noise_std) * np.sqrt(input_dim)
    if condition == "kou":
        return kou_quantity(n_train, signal_norm, noise_std, input_dim)
    if condition == "cao":
        return cao_quantity(n_train, snr, relu_power)
    return small_init_quantity(n_train, snr)


__all__ = ["snr_of", "kou_quantity", "cao_quantity", "small_init_quantity", "CONDITIONS",
           "benign_quantity"]
