"""TrainConfig <-> YAML, typed --set overrides, clear errors, shipped experiment configs."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from resprunet.training import ConfigError, TrainConfig, load_config, save_config

CONFIGS = Path(__file__).resolve().parents[1] / "experiments" / "configs"


def test_defaults_round_trip_through_yaml(tmp_path):
    config = load_config(overrides=["model.filters=16", "data.patch_shape=[12, 32, 32]"])
    path = save_config(config, tmp_path / "config.yaml")
    again = load_config(path)
    assert again == config
    assert again.model.options == {"filters": 16}
    assert again.data.patch_shape == [12, 32, 32]


def test_overrides_are_typed():
    config = load_config(
        overrides=[
            "optimizer.learning_rate=1e-3",  # YAML 1.1 reads this as a string
            "epochs=3",
            "callbacks.profile_batch=[2, 4]",
            "data.prior=neighbour",
            "data.noise={kind: gaussian, sigma: [0.0, 0.2]}",
            "model.options.depth=2",
        ]
    )
    assert config.optimizer.learning_rate == pytest.approx(1e-3)
    assert isinstance(config.optimizer.learning_rate, float)
    assert config.epochs == 3
    assert config.callbacks.profile_batch == [2, 4]
    assert config.data.prior == "neighbour"
    assert config.data.noise == {"kind": "gaussian", "sigma": [0.0, 0.2]}
    assert config.model.options["depth"] == 2


@pytest.mark.parametrize(
    "override, words",
    [
        ("data.patch_size=[8, 8]", ["data.patch_size", "patch_shape"]),
        ("nope=1", ["nope"]),
        ("epochs=two", ["epochs", "integer"]),
        ("epochs=1.5", ["epochs", "integer"]),
        ("data.augment=3", ["data.augment", "true or false"]),
        ("precision=float64", ["precision", "mixed_bfloat16"]),
        ("strategy=tpu", ["strategy", "multiworker"]),
        ("loss=huber", ["loss", "l1_ssim"]),
        ("data.patch_shape=[8, 8]", ["data.patch_shape", "ndim"]),
        ("epochs", ["key.subkey=value"]),
        ("optimizer.clipnorm=0", ["optimizer.clipnorm", "> 0"]),
        ("optimizer.clipnorm=big", ["optimizer.clipnorm", "number"]),
        ("data.gamma=[2, 1]", ["data.gamma", "0 < low <= high"]),
        ("data.gamma=[0, 1]", ["data.gamma", "0 < low <= high"]),
        ("data.gamma=[1]", ["data.gamma", "[low, high]"]),
    ],
)
def test_bad_overrides_name_the_key(override, words):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[override])
    for word in words:
        assert word in str(err.value)


def test_gamma_only_where_clean_volumes_get_synthetic_noise():
    assert load_config(overrides=["data.gamma=[0.5, 2]"]).data.gamma == [0.5, 2]
    for extra in ("method=n2v2", "data.prior=file"):
        with pytest.raises(ConfigError, match="data.gamma .*not with method=.* or prior: file"):
            load_config(overrides=["data.gamma=[0.5, 2]", extra])


def test_model_option_keeps_its_type(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"model": {"name": "unet", "filters": 8}}))
    assert load_config(path, ["model.filters=16"]).model.options["filters"] == 16
    with pytest.raises(ConfigError, match="model.filters"):
        load_config(path, ["model.filters=wide"])


def test_unknown_key_in_file_is_an_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"optimizer": {"lr": 0.1}}))
    with pytest.raises(ConfigError, match=r"optimizer.*lr.*learning_rate"):
        load_config(path)
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_config(tmp_path / "missing.yaml")


def test_direct_construction_is_validated():
    with pytest.raises(ConfigError, match="epochs"):
        TrainConfig(epochs=0)


@pytest.mark.parametrize(
    "name", ["unet_3d", "respr_unet_3d", "unet_2d", "convnet_2d", "irunet_2d"]
)
def test_shipped_configs_load(name):
    config = load_config(CONFIGS / f"{name}.yaml")
    assert config.run.name == name
    assert len(config.data.patch_shape) == config.model.ndim
    assert (config.data.prior == "neighbour") == (config.model.name == "respr_unet")


def test_irunet_config_trains_blind_and_evaluates_at_ten_percent():
    config = load_config(CONFIGS / "irunet_2d.yaml")
    assert config.data.noise["sigma"] == [0.0, 0.2]
    assert config.data.eval_noise == {"kind": "gaussian", "sigma": 0.1}


def test_resume_resolves_the_run_and_its_saved_config(tmp_path):
    from resprunet.training.runs import prepare_run_dir
    from resprunet.training.script import main, resolve

    base = tmp_path / "base.yaml"
    save_config(load_config(overrides=[f"run.root={tmp_path}", "epochs=3"]), base)
    older = prepare_run_dir(load_config(base, ["epochs=4"]), tmp_path / "unet_3d" / "20260101T000000Z")
    newer = prepare_run_dir(load_config(base, ["epochs=5"]), tmp_path / "unet_3d" / "20260102T000000Z")
    for run in (older, newer):
        (run / "metrics.csv").write_text("epoch,loss\n0,0.1\n")  # both got as far as training
    never_trained = prepare_run_dir(load_config(base, ["epochs=6"]), tmp_path / "unet_3d" / "20260103T000000Z")
    assert resolve(base, [], None) == (load_config(base), None)
    config, run_dir = resolve(base, [], "latest")
    assert run_dir == newer and config.epochs == 5  # the run's own config, not base.yaml; not never_trained
    assert never_trained.is_dir()
    assert resolve(base, [], str(older))[0].epochs == 4
    with pytest.raises(FileNotFoundError, match="nothing"):
        resolve(base, [], str(tmp_path / "nothing"))
    with pytest.raises(SystemExit):  # a bad value ends with the usage and one error line
        main(["--config", str(base), "--set", "epochs=zero"], "train", base)


def test_a_run_with_invalid_data_leaves_no_run_folder(tmp_path):
    from resprunet.training import train
    from resprunet.training.config import ConfigError

    config = load_config(overrides=[f"run.root={tmp_path}", "data.train=[/no/such/volume.nii.gz]", "epochs=1"])
    with pytest.raises(ConfigError, match="/no/such/volume.nii.gz"):
        train(config, verbose=0)
    assert not (tmp_path / "unet_3d").exists() or not any((tmp_path / "unet_3d").iterdir())
