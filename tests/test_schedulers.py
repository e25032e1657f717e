import pytest
import torch
from diffusers import CogVideoXDDIMScheduler, DDIMScheduler as DiffusersDDIM

from videoscene.registry import NOISE_SCHEDULERS

COGVIDEOX_5B = dict(beta_start=0.00085, beta_end=0.012, beta_schedule='scaled_linear',
                    prediction_type='v_prediction', rescale_betas_zero_snr=True,
                    snr_shift_scale=1.0, timestep_spacing='trailing', set_alpha_to_one=True)


def build(**overrides):
    return NOISE_SCHEDULERS.build(dict(type='DDIM', **{**COGVIDEOX_5B, **overrides}))


@pytest.mark.parametrize('shift', [1.0, 3.0])
def test_alphas_match_cogvideox_scheduler(shift):
    ours = build(snr_shift_scale=shift)
    ref = CogVideoXDDIMScheduler(**{**COGVIDEOX_5B, 'snr_shift_scale': shift})
    torch.testing.assert_close(ours.alphas_cumprod, ref.alphas_cumprod, rtol=0, atol=1e-14)
    assert ours.alphas_cumprod[-1] == 0  # zero terminal SNR


def test_add_noise_and_velocity_match_diffusers():
    ours, ref = build(), CogVideoXDDIMScheduler(**COGVIDEOX_5B)
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(4, 3, 2, 5, 5, generator=g), torch.randn(4, 3, 2, 5, 5, generator=g)
    t = torch.tensor([0, 300, 549, 999])
    torch.testing.assert_close(ours.add_noise(x0, noise, t), ref.add_noise(x0, noise, t))
    torch.testing.assert_close(ours.velocity(x0, noise, t), ref.get_velocity(x0, noise, t))


@pytest.mark.parametrize('steps', [1, 4, 50])
def test_trailing_grid_and_step_match_diffusers(steps):
    ours, ref = build(), CogVideoXDDIMScheduler(**COGVIDEOX_5B)
    ref.set_timesteps(steps)
    assert ours.timesteps(steps).tolist() == ref.timesteps.tolist()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 2, 4, 6, 6, generator=g)
    ref_x = x.clone()
    grid = ours.timesteps(steps).tolist()
    for i, t in enumerate(grid):
        out = torch.randn(x.shape, generator=g)
        t_prev = grid[i + 1] if i + 1 < len(grid) else -1
        x = ours.ddim_step(out, x, t, t_prev)
        ref_x = ref.step(out, t, ref_x).prev_sample
    torch.testing.assert_close(x, ref_x, rtol=1e-5, atol=1e-5)


def test_leading_epsilon_matches_ddim():
    cfg = dict(beta_schedule='linear', beta_start=0.0001, beta_end=0.02,
               prediction_type='epsilon', rescale_betas_zero_snr=False,
               timestep_spacing='leading', set_alpha_to_one=False, steps_offset=1)
    ours = NOISE_SCHEDULERS.build(dict(type='DDIM', **cfg))
    ref = DiffusersDDIM(**cfg, clip_sample=False)
    ref.set_timesteps(10)
    assert ours.timesteps(10).tolist() == ref.timesteps.tolist()
    g = torch.Generator().manual_seed(2)
    x, out = torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 3, 4, 4, generator=g)
    t, t_prev = int(ref.timesteps[3]), int(ref.timesteps[4])
    torch.testing.assert_close(ours.ddim_step(out, x, t, t_prev), ref.step(out, t, x).prev_sample)


@pytest.mark.parametrize('prediction_type', ['v_prediction', 'sample', 'epsilon'])
def test_conversions_invert_the_forward_process(prediction_type):
    sched = build(prediction_type=prediction_type,
                  rescale_betas_zero_snr=prediction_type != 'epsilon')
    g = torch.Generator().manual_seed(3)
    x0, noise = torch.randn(3, 8, generator=g), torch.randn(3, 8, generator=g)
    t = torch.tensor([10, 500, 990])
    x_t = sched.add_noise(x0, noise, t)
    target = sched.training_target(x0, noise, t)
    torch.testing.assert_close(sched.to_x0(target, x_t, t), x0, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(sched.to_eps(target, x_t, t), noise, rtol=1e-4, atol=1e-4)
    # A jump to t_prev equals noising x0 with the same noise to t_prev.
    t_prev = torch.tensor([0, 250, 700])
    torch.testing.assert_close(sched.ddim_step(target, x_t, t, t_prev),
                               sched.add_noise(x0, noise, t_prev), rtol=1e-4, atol=1e-4)


def test_v_prediction_is_exact_at_the_zero_snr_step():
    sched = build()
    x0, noise = torch.randn(2, 5), torch.randn(2, 5)
    x_t = sched.add_noise(x0, noise, 999)
    torch.testing.assert_close(x_t, noise)
    torch.testing.assert_close(sched.to_x0(sched.velocity(x0, noise, 999), x_t, 999), x0)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match='epsilon'):
        build(prediction_type='epsilon')
    with pytest.raises(ValueError, match='prediction_type'):
        build(prediction_type='flow')
    with pytest.raises(ValueError, match='< 1000'):
        build().add_noise(torch.zeros(1, 2), torch.zeros(1, 2), 1000)
