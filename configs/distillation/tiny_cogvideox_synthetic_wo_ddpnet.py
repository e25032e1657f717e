# Ablation "w/o DDPNet": leap-flow distillation with leap timesteps drawn uniformly from DDPNet's
# grid; at inference the random policy, or a fixed leap (tools/infer.py --policy fixed --leap-t T).
_base_ = ['./tiny_cogvideox_synthetic.py']

model = dict(policy=dict(_delete_=True, type='random', max_timestep=799))
