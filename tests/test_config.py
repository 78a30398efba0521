"""Config loading: every shipped file loads, unknown keys and bad choices fail clearly."""

from pathlib import Path

import pytest

from famipose.config import Config, ConfigError, load_config, to_dict

CONFIGS = sorted(Path(__file__).resolve().parents[1].joinpath("configs").glob("*.yaml"))


def test_configs_exist():
    names = {p.stem for p in CONFIGS}
    for variant in ("single_frame", "famipose", "famipose_official", "famipose_simcc"):
        assert f"{variant}_tiny" in names
        assert f"{variant}_w48_384x288" in names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_config_round_trips(path, tmp_path):
    cfg = load_config(path)
    import yaml

    copy = tmp_path / "copy.yaml"
    copy.write_text(yaml.safe_dump(to_dict(cfg)))
    assert load_config(copy) == cfg


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_config_spells_out_every_field(path):
    """Each shipped file states every setting (its header says so): no default is left implicit."""
    import yaml

    def keys(node, prefix=""):
        return {
            k
            for name, value in node.items()
            for k in ([prefix + name] if not isinstance(value, dict) else keys(value, f"{prefix}{name}."))
        }

    assert keys(yaml.safe_load(path.read_text())) == keys(to_dict(load_config(path)))


def test_defaults_and_overrides():
    cfg = load_config(None, ["model.backbone.frozen=true", "model.deltas=[-1, 1]", "loss.mi_weight=2"])
    assert cfg.model.backbone.frozen is True
    assert cfg.model.deltas == (-1, 1)
    assert cfg.model.num_supports == 2
    assert cfg.loss.mi_weight == 2.0 and isinstance(cfg.loss.mi_weight, float)
    assert Config().model.heatmap_size == (72, 96)


def test_unknown_key_names_valid_keys(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  backbone:\n    widht: 48\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "model.backbone.widht" in str(err.value) and "name" in str(err.value) and "bad.yaml" in str(err.value)


def test_invalid_choice_lists_choices():
    with pytest.raises(ConfigError, match=r"model.variant.*'famipose_official'"):
        load_config(None, ["model.variant=dcpose"])


def test_wrong_types_rejected():
    with pytest.raises(ConfigError, match=r"model\.num_joints"):
        load_config(None, ["model.num_joints=true"])
    with pytest.raises(ConfigError, match=r"model\.input_size"):
        load_config(None, ["model.input_size=[1, 2, 3]"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["model.variant"])


def test_invalid_yaml_names_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml"):
        load_config(path)


@pytest.mark.parametrize(
    "name",
    ["posetrack17_famipose_official_w48", "posetrack18_famipose_official_w48", "posetrack21_famipose_official_w48"],
)
def test_official_posetrack_configs_carry_the_released_recipe(name):
    """The released trainer: Adam 1e-3, LR_STEP [8, 12, 16] x0.1, 21 epochs, batch 48 on one GPU,
    fp32; JointMSELoss without the 0.5 (pose_weight 2); MI α = 0.5, β = 0.1, T = 0.05."""
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / f"{name}.yaml")
    train, loss = cfg.train, cfg.loss
    assert (train.optimizer, train.lr, train.milestones, train.gamma, train.epochs) == (
        "adam",
        1e-3,
        (8, 12, 16),
        0.1,
        21,
    )
    assert (train.batch_size, train.amp) == (48, False)
    assert (loss.pose_weight, loss.mi_form, loss.mi_weight, loss.mi_lambda, loss.mi_temperature) == (
        2.0,
        "official",
        0.5,
        0.1,
        0.05,
    )
    assert cfg.model.backbone.frozen and cfg.model.backbone.frozen_bn == "train" and not loss.mi_stop_at_backbone
