"""Environment settings TensorFlow reads once, when it is first imported.

TensorFlow 2.21 turns its oneDNN (MKL-DNN) CPU kernels on only on CPUs with AVX512_VNNI;
everywhere else it runs its own, much slower, Eigen kernels unless ``TF_ENABLE_ONEDNN_OPTS=1``
is set before ``import tensorflow``. Measured, one training step of a 3D U-Net (16 filters,
depth 3, batch 2 of 16 x 64 x 64 voxels, float32):

- 2-core Intel Xeon (AVX-512 without VNNI or bf16): oneDNN on is 6.8x faster than off.
- 2-core AMD EPYC Zen 3 (AVX2, no AVX-512, no bf16): 6.8 s -> 0.9 s per step (7.5x faster).

So :func:`enable_onednn` sets ``TF_ENABLE_ONEDNN_OPTS=1`` unless the user has set the
variable (any value, e.g. ``0`` to compare or to get bit-identical Eigen results; oneDNN may
change float32 results in the last bits). ``data_pipelines`` and ``resprunet`` call it when
they are imported, before anything of theirs imports TensorFlow. When TensorFlow was already
imported (e.g. ``import tensorflow`` before ``import resprunet``), the setting can no longer
take effect and a warning says so; set the variable in the shell or import ``resprunet``
first.

This module must not import TensorFlow (nor anything that does).
"""
from __future__ import annotations

import logging
import os
import sys

__all__ = ["ONEDNN_VARIABLE", "enable_onednn", "onednn_state"]

log = logging.getLogger(__name__)

#: The environment variable TensorFlow reads at import time.
ONEDNN_VARIABLE = "TF_ENABLE_ONEDNN_OPTS"

# What enable_onednn found on its first call: did the user set the variable, and was
# TensorFlow already imported (so that nothing set here could take effect)?
_STATE: dict[str, bool] = {}


def enable_onednn() -> bool:
    """Set ``TF_ENABLE_ONEDNN_OPTS=1`` unless the user set it; warn if it is too late.

    Only the first call decides (later calls return the same answer), so that the record of
    whether the user set the variable is not confused by our own setting.

    Returns
    -------
    bool
        True when the user had set ``TF_ENABLE_ONEDNN_OPTS`` (left as it is), False when
        this function set it to ``"1"``.
    """
    if not _STATE:
        user_set = ONEDNN_VARIABLE in os.environ
        tf_imported = "tensorflow" in sys.modules
        _STATE.update(user_set=user_set, tf_imported_before=tf_imported)
        if not user_set:
            os.environ[ONEDNN_VARIABLE] = "1"
            if tf_imported:
                log.warning(
                    "TensorFlow was imported before data_pipelines/resprunet, so setting "
                    "%s=1 cannot take effect; on CPUs without AVX512_VNNI training may be ~7x "
                    "slower. Set %s=1 in the environment or import resprunet first.",
                    ONEDNN_VARIABLE, ONEDNN_VARIABLE,
                )
    return _STATE["user_set"]


def onednn_state() -> dict[str, bool | str | None]:
    """What was decided about oneDNN for this process.

    Returns
    -------
    dict
        ``enabled`` (True/False as the variable's value asks, ``"0"``/``"false"``/empty
        meaning off; None when TensorFlow's own default applies: the variable is unset, or
        we set it after TensorFlow was imported), ``value`` (the variable's current
        value or None), ``user_set`` (the user set it before us), ``tf_imported_before``
        (TensorFlow was imported before :func:`enable_onednn` ran, so only the user's
        environment counted).
    """
    value = os.environ.get(ONEDNN_VARIABLE)
    user_set = _STATE.get("user_set", True)
    tf_imported_before = _STATE.get("tf_imported_before", "tensorflow" in sys.modules)
    enabled: bool | None = None
    if value is not None and (user_set or not tf_imported_before):
        enabled = value.strip().lower() not in ("0", "false", "")
    return {"enabled": enabled, "value": value, "user_set": user_set,
            "tf_imported_before": tf_imported_before}
