"""Train a 3D denoiser. Default: a small 3D U-Net on the embedded MNI152 T1 sample, 10 % noise.

    python experiments/train_3d.py [--config experiments/configs/unet_3d.yaml] [--set key=value ...]
    python experiments/train_3d.py --resume latest        # continue a killed run
    tensorboard --logdir runs/unet_3d
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from resprunet.training.script import main  # noqa: E402

if __name__ == "__main__":
    main(sys.argv[1:], "Train a 3D denoiser", Path(__file__).parent / "configs" / "unet_3d.yaml")
