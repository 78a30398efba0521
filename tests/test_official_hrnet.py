"""Official HRNet COCO checkpoints: model from the file alone, init_from, and clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from famipose.config import ConfigError, load_config
from famipose.engine.builders import build_model
from famipose.inference import load_model_and_config
from famipose.models.checkpoint import (
    CheckpointError,
    official_hrnet_config,
    official_hrnet_model,
    parse_size,
    read_state_dict,
    size_from_file_name,
)
from famipose.models.hrnet import HRNet

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def _official_state(preset: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random state dict in the official layout (our HRNet keys are the official ones)."""
    torch.manual_seed(seed)
    model = HRNet.from_name(preset)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand_like(tensor) * 0.1 + 0.05)
    return model.state_dict()


def _meta_state(preset: str, num_joints: int = 17) -> dict[str, torch.Tensor]:
    """Shapes only: the official layout of a large preset without allocating it."""
    with torch.device("meta"):
        return HRNet.from_name(preset, num_joints).state_dict()


@pytest.mark.parametrize(
    ("preset", "file_name", "input_size"),
    [("w32", "pose_hrnet_w32_256x192.pth", (192, 256)), ("w48", "pose_hrnet_w48_384x288.pth", (288, 384))],
)
def test_width_and_size_come_from_the_tensors_and_the_file_name(
    preset: str, file_name: str, input_size: tuple[int, int]
) -> None:
    config = official_hrnet_config(_meta_state(preset), Path("/weights") / file_name)
    assert config.backbone.name == preset and config.input_size == input_size
    assert config.variant == "single_frame" and config.num_joints == 17


def test_size_flag_and_file_name_parsing() -> None:
    assert parse_size("384x288") == (288, 384)
    assert size_from_file_name("pose_hrnet_w48_384x288.pth") == (288, 384)
    assert size_from_file_name("hrnet_w32.pth") is None
    with pytest.raises(ValueError, match="HEIGHTxWIDTH"):
        parse_size("256 by 192")
    with pytest.raises(ValueError, match="multiples of 4"):
        parse_size("255x192")


def test_a_size_flag_that_contradicts_the_file_name_is_refused() -> None:
    with pytest.raises(CheckpointError, match=r"pose_hrnet_w48_384x288\.pth.*named for 384x288.*256x192"):
        official_hrnet_config(_meta_state("w48"), "pose_hrnet_w48_384x288.pth", (192, 256))


def test_a_file_name_without_size_needs_the_flag() -> None:
    with pytest.raises(CheckpointError, match=r"hrnet\.pth.*--input-size"):
        official_hrnet_config(_meta_state("w32"), "hrnet.pth")
    assert official_hrnet_config(_meta_state("w32"), "hrnet.pth", (96, 128)).input_size == (96, 128)


def test_a_classifier_checkpoint_is_refused_in_words() -> None:
    state = {key: value for key, value in _meta_state("w32").items() if not key.startswith("final_layer")}
    state["final_layer.0.weight"] = torch.empty(2048, 1024, 1, 1, device="meta")
    state["classifier.weight"] = torch.empty(1000, 2048, device="meta")
    with pytest.raises(CheckpointError, match=r"hrnet_w32_imagenet\.pth.*image classifier.*'classifier\.weight'"):
        official_hrnet_config(state, "hrnet_w32_imagenet.pth", (192, 256))


def test_other_joint_counts_and_widths_are_refused() -> None:
    with pytest.raises(CheckpointError, match="16 joints"):
        official_hrnet_config(_meta_state("w32", 16), "pose_hrnet_w32_256x256.pth")
    state = dict(_meta_state("w32"))
    state["final_layer.weight"] = torch.empty(17, 40, 1, 1, device="meta")
    with pytest.raises(CheckpointError, match="width 40"):
        official_hrnet_config(state, "pose_hrnet_w40_256x192.pth")


def test_weights_load_strictly_and_reproduce_the_network(tmp_path: Path) -> None:
    state = _official_state("tiny")
    path = tmp_path / "pose_hrnet_tiny_128x96.pth"
    torch.save(state, path)
    model, config = official_hrnet_model(read_state_dict(path), path)
    assert config.input_size == (96, 128) and config.backbone.name == "tiny"
    reference = HRNet.from_name("tiny")
    reference.load_state_dict(state)
    crops = torch.randn(2, 3, 128, 96)
    with torch.no_grad():
        torch.testing.assert_close(model(crops).pose.heatmaps, reference.eval()(crops), rtol=0, atol=0)


def test_a_missing_key_is_named(tmp_path: Path) -> None:
    state = _official_state("tiny")
    del state["stage2.0.fuse_layers.0.1.0.weight"]
    path = tmp_path / "pose_hrnet_tiny_128x96.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"pose_hrnet_tiny_128x96\.pth.*missing keys \(1\): stage2\.0\.fuse"):
        official_hrnet_model(read_state_dict(path), path)


def test_video_model_needs_no_config_for_an_official_file(tmp_path: Path) -> None:
    path = tmp_path / "pose_hrnet_tiny.pth"
    torch.save(_official_state("tiny"), path)
    model, config = load_model_and_config(path, input_size=(96, 128))
    assert config.model.input_size == (96, 128) and config.model.variant == "single_frame"
    assert torch.equal(model.backbone.conv1.weight, _official_state("tiny")["conv1.weight"])
    with pytest.raises(ConfigError, match="--input-size applies to an official HRNet state dict alone"):
        load_model_and_config(path, CONFIGS / "single_frame_tiny.yaml", input_size=(96, 128))


def test_a_plain_state_dict_without_config_still_asks_for_one(tmp_path: Path) -> None:
    torch.save({"weight": torch.zeros(2)}, tmp_path / "other.pth")
    problem = r"other\.pth: holds weights without a config, and not an official HRNet pose state dict; pass --config"
    with pytest.raises(ConfigError, match=problem):
        load_model_and_config(tmp_path / "other.pth")


def test_init_from_accepts_an_official_file_for_stage_one_and_two(tmp_path: Path) -> None:
    state = _official_state("tiny", seed=3)
    path = tmp_path / "pose_hrnet_tiny_128x96.pth"
    torch.save(state, path)
    for name in ("single_frame_tiny.yaml", "famipose_tiny.yaml"):
        config = load_config(CONFIGS / name, [f"train.init_from={path}"])
        model = build_model(config.model, config.train)
        for key, value in state.items():
            assert torch.equal(model.backbone.state_dict()[key], value), (name, key)
    assert torch.equal(model.head.conv.weight, state["final_layer.weight"])  # stage 2's head starts as HRNet's


def test_init_from_refuses_an_official_file_of_another_width(tmp_path: Path) -> None:
    torch.save(_official_state("tiny"), tmp_path / "pose_hrnet_tiny_128x96.pth")
    config = load_config(CONFIGS / "single_frame_tiny.yaml",
                         ["model.backbone.name=w32", f"train.init_from={tmp_path / 'pose_hrnet_tiny_128x96.pth'}"])
    with pytest.raises(CheckpointError, match=r"pose_hrnet_tiny_128x96\.pth.*other shapes than the model's"):
        build_model(config.model, config.train)
