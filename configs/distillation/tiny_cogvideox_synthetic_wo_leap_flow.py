# Ablation "w/o 3D-aware leap flow": standard consistency distillation. The student learns from
# the true latents noised over the whole solver grid and generates from pure noise; the render
# is not used. (The policy optimizer of the base config is not built: `random` has no parameters.)
_base_ = ['./tiny_cogvideox_synthetic.py']

model = dict(leap_flow=False, policy=dict(_delete_=True, type='random'))
