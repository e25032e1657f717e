# Sweep spec (tools/sweep.py; format: videoscene/sweep/spec.py): the leap timestep policy of the
# tiny stage-3 config, DDPNet against a fixed leap and random leaps, each trained once and
# evaluated with 4 and 8 inference steps (PSNR of the one-step student, the N-step student and
# the N-step teacher on the held-out synthetic scenes). Needs the stage-1 checkpoint and the
# exported tiny teacher of configs/distillation/tiny_cogvideox_synthetic.py (tools/demo.py makes
# both).
#   python tools/sweep.py configs/sweeps/tiny_distillation_policy.py
#   python tools/sweep.py configs/sweeps/tiny_distillation_policy.py --launcher slurm  # commands
base = 'configs/distillation/tiny_cogvideox_synthetic.py'
options = {'train_cfg.max_iters': 100, 'custom_hooks.2.train_iters': 75}
axes = dict(policy=[
    {'label': 'DDPNet', 'model.policy.type': 'DDPNet'},
    {'label': 'fixed t=549', 'model.policy': dict(type='fixed', t=549)},
    {'label': 'random', 'model.policy': dict(type='random', max_timestep=799)},
])
test_axes = dict(steps=[            # tools/test.py --steps N: the model's sample_steps
    {'label': '4 steps', 'steps': 4},
    {'label': '8 steps', 'steps': 8},
])
test_metrics = ['psnr']             # tools/test.py --metrics
metrics = {                         # column -> 'ROW:KEY' of each cell's metrics.json overall
    'PSNR 1-step': '1-step:novel_view/psnr',
    'PSNR N-step': 'N-step:novel_view/psnr',
    'PSNR teacher': 'teacher:novel_view/psnr',
}
out = 'work_dirs/sweeps/tiny_distillation_policy'
