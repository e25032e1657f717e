# Stage 1 on the synthetic default, sized for a 2-core CPU: 64x64 images, a slimmer MVSplat
# (fewer transformer layers and depth candidates; the architecture is otherwise the official one).
#   python tools/train.py configs/mvsplat/mvsplat_synthetic_cpu.py
_base_ = [
    '../_base_/models/mvsplat.py',
    '../_base_/datasets/synthetic_scenes.py',
    '../_base_/schedules/adam_short.py',
    '../_base_/default_runtime.py',
]

model = dict(reconstructor=dict(num_transformer_layers=2, num_depth_candidates=32))
val_dataloader = dict(dataset=dict(frames=40))
test_dataloader = val_dataloader
train_cfg = dict(max_iters=300, val_interval=100)
param_scheduler = [dict(type='CosineAnnealingLR', T_max=300, eta_min=2e-5, by_epoch=False)]
default_hooks = dict(checkpoint=dict(interval=100), logger=dict(interval=10))
