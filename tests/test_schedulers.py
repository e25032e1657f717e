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


def test_consistency_scalings_match_diffusers_lcm():
    from diffusers import LCMScheduler
    ours, ref = build(), LCMScheduler(timestep_scaling=10.0)
    t = torch.tensor([0, 1, 19, 549, 999])
    c_skip, c_out = ours.consistency_scalings(t, torch.zeros(5, 3, 2, 2, 2, dtype=torch.float64))
    assert c_skip.shape == (5, 1, 1, 1, 1)
    for i, step in enumerate(t.tolist()):
        skip, out = ref.get_scalings_for_boundary_condition_discrete(step)
        assert abs(c_skip[i].item() - skip) < 1e-12 and abs(c_out[i].item() - out) < 1e-12
    assert c_skip[0].item() == 1 and c_out[0].item() == 0     # the boundary: f(x, 0) = x


def test_solver_grid_is_lcms_and_leap_grid_descends_from_the_start():
    from diffusers import LCMScheduler
    ours = build()
    ref = LCMScheduler(original_inference_steps=50)
    ref.set_timesteps(50)        # all 50 of LCM's original grid, descending
    assert ours.solver_timesteps(50).tolist() == sorted(ref.timesteps.tolist())
    assert ours.solver_timesteps(50).tolist()[:3] == [19, 39, 59]
    assert ours.leap_timesteps(549, 1).tolist() == [549]
    grid = ours.leap_timesteps(549, 4).tolist()
    assert grid[0] == 549 and grid == sorted(grid, reverse=True) and len(set(grid)) == 4
    assert grid[-1] < 549 / 4 + 1
    with pytest.raises(ValueError, match='leap start'):
        ours.leap_timesteps(1000, 1)
    with pytest.raises(ValueError, match='steps from t=3'):
        ours.leap_timesteps(3, 5)
