"""Checkpoint reading/loading: round trips, prefix handling, and readable failures."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from famipose.models.checkpoint import CheckpointError, compare_state_dict, load_weights, read_state_dict
from famipose.models.hrnet import HRNet, hrnet_tiny


def _trained_tiny(seed: int) -> HRNet:
    """A tiny HRNet with distinctive weights and BN statistics."""
    torch.manual_seed(seed)
    model = hrnet_tiny()
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand_like(tensor) * 0.1 + 0.05)
    return model.eval()


@pytest.fixture(scope="module")
def source() -> HRNet:
    return _trained_tiny(0)


def _outputs(model: HRNet) -> torch.Tensor:
    torch.manual_seed(123)
    with torch.no_grad():
        return model.eval()(torch.randn(2, 3, 64, 48))


def test_round_trip_through_wrapped_file(source: HRNet, tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pth"
    torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in source.state_dict().items()}}, path)
    target = _trained_tiny(1)
    assert not torch.equal(_outputs(target), _outputs(source))
    report = load_weights(target, path)
    assert report.ok
    torch.testing.assert_close(_outputs(target), _outputs(source), rtol=0, atol=0)


def test_model_wrapper_and_backbone_prefix(source: HRNet, tmp_path: Path) -> None:
    path = tmp_path / "mm.pth"
    torch.save({"model": {"backbone." + k: v for k, v in source.state_dict().items()}}, path)
    state = read_state_dict(path)
    assert state.keys() == source.state_dict().keys()
    assert torch.equal(state["final_layer.weight"], source.final_layer.weight)


def test_prefix_selects_sub_network(source: HRNet) -> None:
    combined = {"net.single." + k: v for k, v in source.state_dict().items()}
    combined["net.other.weight"] = torch.zeros(3)
    target = _trained_tiny(2)
    load_weights(target, combined, prefix="net.single.")
    torch.testing.assert_close(_outputs(target), _outputs(source), rtol=0, atol=0)


def test_missing_key_is_named_and_nothing_loaded(source: HRNet) -> None:
    state = dict(source.state_dict())
    del state["stage4.0.fuse_layers.0.3.0.weight"]
    target = _trained_tiny(3)
    before = _outputs(target)
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): stage4\.0\.fuse_layers\.0\.3\.0\.weight"):
        load_weights(target, state)
    torch.testing.assert_close(_outputs(target), before, rtol=0, atol=0)


def test_unexpected_key_is_named(source: HRNet) -> None:
    state = dict(source.state_dict()) | {"extra_head.weight": torch.zeros(1)}
    with pytest.raises(CheckpointError, match=r"unexpected keys \(1\): extra_head\.weight"):
        load_weights(_trained_tiny(4), state)


def test_shape_mismatch_names_key_and_shapes(source: HRNet) -> None:
    wide = HRNet.from_name("tiny", num_joints=15)
    with pytest.raises(CheckpointError) as info:
        load_weights(wide, source.state_dict())
    message = str(info.value)
    assert "final_layer.weight: checkpoint [17, 16, 1, 1] vs model [15, 16, 1, 1]" in message
    assert "final_layer.bias: checkpoint [17] vs model [15]" in message
    assert "missing keys" not in message and "unexpected keys" not in message


def test_non_strict_loads_what_fits(source: HRNet) -> None:
    target = HRNet.from_name("tiny", num_joints=15)
    original_head = target.final_layer.weight.clone()
    report = load_weights(target, dict(source.state_dict()) | {"extra": torch.ones(1)}, strict=False)
    assert report.unexpected == ["extra"]
    assert [k for k, _, _ in report.mismatched] == ["final_layer.weight", "final_layer.bias"]
    assert torch.equal(target.conv1.weight, source.conv1.weight)
    assert torch.equal(target.final_layer.weight, original_head)


def test_missing_num_batches_tracked_is_tolerated(source: HRNet) -> None:
    legacy = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert compare_state_dict(source, legacy).ok
    target = _trained_tiny(5)
    load_weights(target, legacy)
    torch.testing.assert_close(_outputs(target), _outputs(source), rtol=0, atol=0)


def test_corrupt_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.pth"
    path.write_bytes(b"\x00not a checkpoint at all" * 10)
    with pytest.raises(CheckpointError, match=r"broken\.pth"):
        read_state_dict(path)


def test_absent_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"nowhere\.pth"):
        load_weights(hrnet_tiny(), tmp_path / "nowhere.pth")


def test_file_without_tensors_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "meta.pth"
    torch.save({"epoch": 7, "best": 0.5}, path)
    with pytest.raises(CheckpointError, match=r"meta\.pth.*not a state dict"):
        read_state_dict(path)


def test_checkpoint_error_is_runtime_error() -> None:
    assert issubclass(CheckpointError, RuntimeError)
