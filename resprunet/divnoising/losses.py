"""The DivNoising loss, with :mod:`keras.ops` only: the negative evidence lower bound per pixel.

For a noisy image ``x`` of ``N`` values (pixels times channels), the decoded signal
``s = g(z)`` of one sample ``z ~ q(z | x) = N(mu, diag(exp(logvar)))``, and a noise model
``p(x | s)``::

    reconstruction = -(1 / N) * sum_i log p(x_i | s_i)
    kl             =  (1 / N) * sum_j KL(N(mu_j, exp(logvar_j)) || N(0, 1))
                   =  (1 / N) * sum_j 0.5 * (mu_j^2 + exp(logvar_j) - 1 - logvar_j)
    loss           =  reconstruction + kl_weight * kl

Both terms are divided by the number of IMAGE values ``N`` (not of latent values), as in
DivNoising (Prakash et al., ICLR 2021, ``divnoising/losses.py``: the mean negative
log-likelihood plus the summed KL divided by ``x.numel()``), so with ``kl_weight = 1`` the
loss is exactly the negative ELBO per pixel (nats/pixel) and does not depend on the batch or
patch size. ``kl_weight`` (beta) other than 1 trades sample diversity against fidelity.
"""
from __future__ import annotations

from typing import Any

from keras import ops

__all__ = ["elbo_terms", "kl_divergence"]


def kl_divergence(mu: Any, logvar: Any) -> Any:
    """Element-wise KL(N(mu, exp(logvar)) || N(0, 1)) in nats, the shape of ``mu`` (float32)."""
    mu = ops.cast(mu, "float32")
    logvar = ops.cast(logvar, "float32")
    return 0.5 * (ops.square(mu) + ops.exp(logvar) - 1.0 - logvar)


def elbo_terms(noisy: Any, signal: Any, mu: Any, logvar: Any, noise_model: Any) -> tuple[Any, Any]:
    """The two terms of the DivNoising loss (see the module docstring), batch-averaged.

    Parameters
    ----------
    noisy : tensor, (batch, *spatial, c)
        The observed image, normalised units.
    signal : tensor, (batch, *spatial, c)
        The decoder's output for one posterior sample, same units.
    mu, logvar : tensor, (batch, *latent_spatial, latent_channels)
        The encoder's posterior parameters.
    noise_model : resprunet.noise_models.NoiseModel
        ``log_likelihood(observation, signal)`` in nats per unit of the observation.

    Returns
    -------
    reconstruction, kl : scalar tensors (float32)
        Nats per image value: ``-mean(log p(noisy | signal))`` and
        ``sum(KL) / noisy.size``.
    """
    noisy = ops.cast(noisy, "float32")
    reconstruction = -ops.mean(noise_model.log_likelihood(noisy, ops.cast(signal, "float32")))
    values = ops.cast(ops.size(noisy), "float32")
    return reconstruction, ops.sum(kl_divergence(mu, logvar)) / values
