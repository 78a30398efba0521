"""GTM and LCM behaviour: identity at initialisation, key frame drives only the parameters."""

import pytest
import torch

from famipose.config import GTMConfig, LCMConfig
from famipose.models.alignment import (
    CascadedCalibration,
    GlobalTransformModule,
    LocalCalibrationModule,
    affine_from_params,
    warp_features,
)


@pytest.mark.parametrize(("mode", "source"), [("affine", "concat"), ("translation", "difference")])
def test_gtm_starts_as_identity(mode, source):
    torch.manual_seed(0)
    gtm = GlobalTransformModule(8, GTMConfig(mode=mode, input=source, hidden_channels=4, num_downsamples=2))
    key, support = torch.randn(3, 8, 12, 10), torch.randn(3, 8, 12, 10)
    warped, theta = gtm(key, support)
    torch.testing.assert_close(theta, torch.eye(2, 3).expand(3, 2, 3))
    torch.testing.assert_close(warped, support, atol=1e-5, rtol=0)


def test_translation_warp_moves_by_whole_pixels():
    # A shift of 2/w in normalised units samples one pixel to the right: out[x] = in[x + 1].
    features = torch.arange(2 * 1 * 4 * 6, dtype=torch.float32).view(2, 1, 4, 6)
    theta = affine_from_params(torch.tensor([[2 / 6, 0.0], [0.0, 2 / 4]]), "translation")
    out = warp_features(features, theta)
    torch.testing.assert_close(out[0, 0, :, :5], features[0, 0, :, 1:])
    assert out[0, 0, :, 5].abs().max() < 1e-4  # sampled outside the map: zero padding
    torch.testing.assert_close(out[1, 0, :3], features[1, 0, 1:])


def test_affine_params_layout():
    params = torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]])
    expected = torch.tensor([[[1.1, 0.2, 0.3], [0.4, 1.5, 0.6]]])
    torch.testing.assert_close(affine_from_params(params, "affine"), expected)
    with pytest.raises(ValueError, match="translation"):
        affine_from_params(params, "projective")


def _lcm(mask: str = "sigmoid") -> LocalCalibrationModule:
    return LocalCalibrationModule(8, LCMConfig(offset_groups=2, dilation=2, mask=mask, dcn_impl="torch"))


@pytest.mark.parametrize("mask", ["sigmoid", "raw"])
def test_lcm_starts_as_identity(mask):
    torch.manual_seed(0)
    lcm = _lcm(mask)
    key, coarse = torch.randn(2, 8, 9, 7), torch.randn(2, 8, 9, 7)
    torch.testing.assert_close(lcm(key, coarse), coarse, atol=1e-5, rtol=0)


def test_key_frame_only_drives_offsets_and_mask():
    torch.manual_seed(0)
    lcm = _lcm()
    for p in lcm.parameters():  # leave the identity initialisation
        p.data.add_(0.3 * torch.randn_like(p))
    coarse = torch.randn(2, 8, 9, 7)
    key_a, key_b = torch.randn(2, 8, 9, 7), torch.randn(2, 8, 9, 7)
    offset, mask = lcm.predict_params(key_a, coarse)
    offset_b, _ = lcm.predict_params(key_b, coarse)
    assert not torch.allclose(offset, offset_b)  # the key frame does steer the parameters
    # With O and M held fixed, the key frame cannot change the calibrated support ...
    out_a = lcm.calibrate(coarse, offset, mask)
    torch.testing.assert_close(lcm.calibrate(coarse, offset, mask), out_a)
    key = key_a.clone().requires_grad_(True)
    o, m = lcm.predict_params(key, coarse)
    lcm.calibrate(coarse, o.detach(), m.detach()).sum().backward()
    assert key.grad is None or torch.all(key.grad == 0)
    # ... but the support content does flow through.
    assert not torch.allclose(lcm.calibrate(coarse + 1.0, offset, mask), out_a)
    # Through the parameters, the key frame changes the output.
    assert not torch.allclose(lcm(key_b, coarse), lcm(key_a, coarse))


def test_cascaded_calibration_key_reaches_output_only_through_offsets():
    torch.manual_seed(0)
    calib = CascadedCalibration(8, LCMConfig(offset_groups=2, mask="raw", dcn_impl="torch"))
    key, merged = torch.randn(1, 8, 9, 7, requires_grad=True), torch.randn(1, 8, 9, 7)
    captured = []
    calib.params[2].register_forward_hook(lambda _m, _i, out: captured.append(out))
    out = calib(key, merged)
    assert out.shape == merged.shape
    # Gradients w.r.t. the key vanish once the offsets/mask of the third DCN are cut.
    offset, mask = captured[0]
    aligned = calib.deforms[2](merged, offset.detach(), mask.detach())
    final = calib.deforms[3](aligned, *calib.params[3](aligned))
    assert torch.autograd.grad(final.sum(), key, allow_unused=True)[0] is None
