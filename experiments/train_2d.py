"""Train a 2D denoiser. Default: a 2D U-Net on MNI152 T1 slices (val t1_head, test epi), 10 % noise.

    python experiments/train_2d.py [--config experiments/configs/unet_2d.yaml] [--set key=value ...]
    python experiments/train_2d.py --config experiments/configs/irunet_2d.yaml
    tensorboard --logdir runs/unet_2d
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from resprunet.training.script import main  # noqa: E402

if __name__ == "__main__":
    main(sys.argv[1:], "Train a 2D denoiser", Path(__file__).parent / "configs" / "unet_2d.yaml")
