"""EulerScheduler against diffusers' EulerDiscreteScheduler (SVD's configuration)."""
import pytest
import torch
from diffusers import EulerDiscreteScheduler

from videoscene.registry import NOISE_SCHEDULERS
from videoscene.schedulers import EulerScheduler

SVD_CONFIG = dict(beta_start=0.00085, beta_end=0.012, beta_schedule='scaled_linear',
                  prediction_type='v_prediction', interpolation_type='linear', use_karras_sigmas=True,
                  sigma_min=0.002, sigma_max=700.0, timestep_type='continuous',
                  timestep_spacing='leading', steps_offset=1)


def reference(steps: int) -> EulerDiscreteScheduler:
    scheduler = EulerDiscreteScheduler(**SVD_CONFIG)
    scheduler.set_timesteps(steps)
    return scheduler


@pytest.mark.parametrize('steps', [10, 28])  # n - 1 divides T - 1 = 999
def test_grid_sigmas_and_network_timesteps_match_diffusers(steps):
    ours, theirs = EulerScheduler(), reference(steps)
    grid = ours.timesteps(steps)
    torch.testing.assert_close(ours.sigmas[grid].float(), theirs.sigmas[:-1], rtol=1e-5, atol=0)
    torch.testing.assert_close(ours.noise_condition(grid), theirs.timesteps, rtol=1e-5, atol=1e-6)


def test_other_step_counts_land_on_the_nearest_table_entry():
    ours, theirs = EulerScheduler(), reference(25)
    sigmas = ours.sigmas[ours.timesteps(25)].float()
    ratio = (sigmas / theirs.sigmas[:-1]).log().abs()
    assert ratio.max() < 0.02  # adjacent Karras table entries differ by < 2 % in log sigma here


def test_euler_steps_match_diffusers_in_sigma_space():
    ours, theirs = EulerScheduler(), reference(10)
    grid = ours.timesteps(10).tolist()
    torch.manual_seed(0)
    x_sigma = torch.randn(2, 3, 4, 4) * theirs.sigmas[0]
    for i, t in enumerate(theirs.timesteps):
        v = torch.randn(2, 3, 4, 4)
        sigma = theirs.sigmas[i]
        x_t = x_sigma / (sigma ** 2 + 1).sqrt()  # our x_t is EDM's c_in-scaled network input
        torch.testing.assert_close(x_t, theirs.scale_model_input(x_sigma, t))
        expected = theirs.step(v, t, x_sigma).prev_sample
        t_prev = grid[i + 1] if i + 1 < len(grid) else -1
        x_prev = ours.ddim_step(v, x_t, grid[i], t_prev)
        got = x_prev / ours.alpha_bar(t_prev, x_prev).sqrt()
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * float(sigma))
        x_sigma = expected


def test_x0_from_v_and_add_noise_match_edm():
    ours, theirs = EulerScheduler(), reference(10)
    grid = ours.timesteps(10)
    x0, noise, v = torch.randn(3, 10, 2), torch.randn(3, 10, 2), torch.randn(3, 10, 2)
    t = grid[3].repeat(3)
    sigma = theirs.sigmas[3]
    # diffusers adds noise in sigma space: x0 + sigma * noise
    torch.testing.assert_close(ours.add_noise(x0, noise, t) * (1 + sigma ** 2).sqrt(),
                               theirs.add_noise(x0, noise, theirs.timesteps[3:4].repeat(3)), rtol=1e-4, atol=1e-4)
    x_t = ours.add_noise(x0, noise, t)
    # EDM v-prediction: x0 = c_skip * x_sigma + c_out * v
    x_sigma = x_t * (1 + sigma ** 2).sqrt()
    edm = x_sigma / (sigma ** 2 + 1) - sigma / (sigma ** 2 + 1).sqrt() * v
    torch.testing.assert_close(ours.to_x0(v, x_t, t), edm, rtol=1e-5, atol=1e-5)
    # the training target recovers x0 exactly
    torch.testing.assert_close(ours.to_x0(ours.training_target(x0, noise, t), x_t, t), x0,
                               rtol=1e-4, atol=1e-4)


def test_registry_and_invalid_configurations():
    assert isinstance(NOISE_SCHEDULERS.build(dict(type='Euler')), EulerScheduler)
    with pytest.raises(ValueError, match='needs sigma_min and sigma_max'):
        EulerScheduler(sigma_min=None)
    with pytest.raises(ValueError, match="needs prediction_type='v_prediction'"):
        EulerScheduler(prediction_type='epsilon')
    with pytest.raises(ValueError, match='no integer training timestep'):
        EulerScheduler(timestep_type='discrete')
    with pytest.raises(ValueError, match='must be in'):
        EulerScheduler().noise_condition(1000)


def test_beta_sigmas_with_discrete_timesteps_follow_the_beta_schedule():
    ours = EulerScheduler(use_karras_sigmas=False, prediction_type='epsilon', timestep_type='discrete')
    theirs = EulerDiscreteScheduler(beta_schedule='scaled_linear', beta_start=0.00085, beta_end=0.012)
    expected = ((1 - theirs.alphas_cumprod) / theirs.alphas_cumprod).sqrt()
    torch.testing.assert_close(ours.sigmas.float(), expected, rtol=1e-4, atol=0)  # theirs: float32
    assert ours.noise_condition(torch.tensor([7])).item() == 7.0
