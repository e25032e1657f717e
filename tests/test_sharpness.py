"""Sharpness (gradient magnitude relative to the truth), reported beside PSNR, which favours blur."""
import torch
import torch.nn.functional as F

from videoscene.evaluation import gradient_magnitude, sharpness


def test_gradient_magnitude_of_a_known_ramp_and_a_flat_image():
    ramp = torch.linspace(0, 1, 11).expand(3, 11, 11)         # +0.1 per column, 0 per row
    assert torch.allclose(gradient_magnitude(ramp), torch.tensor(0.05))
    assert gradient_magnitude(torch.full((2, 3, 8, 8), 0.5)).eq(0).all()


def test_blur_scores_below_one_noise_above_and_the_truth_one():
    truth = torch.rand(2, 5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    kernel = torch.full((3, 1, 5, 5), 1 / 25)
    blurred = F.conv2d(truth.flatten(0, 1), kernel, padding=2, groups=3).unflatten(0, (2, 5))
    noisy = (truth + 0.5 * torch.randn(truth.shape, generator=torch.Generator().manual_seed(1)))
    assert torch.allclose(sharpness(truth, truth), torch.ones(2))
    assert (sharpness(blurred, truth) < 0.5).all()
    assert (sharpness(noisy, truth) > 1.2).all()
    assert sharpness(blurred, truth).shape == (2,)
