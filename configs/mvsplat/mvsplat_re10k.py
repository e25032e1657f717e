# Stage 1: MVSplat on RealEstate10K at 256x256 with the official training recipe (Adam 2e-4,
# batch 14 in total, near 1 / far 100), rendered with gsplat on CUDA.
#   torchrun --nproc-per-node 8 tools/train.py configs/mvsplat/mvsplat_re10k.py --launcher pytorch
_base_ = [
    '../_base_/models/mvsplat.py',
    '../_base_/default_runtime.py',
]

data_root = 'data/re10k'
re10k = dict(type='RE10KDataset', root=data_root, image_shape=(256, 256), near=1.0, far=100.0)
# MSE + 0.05 LPIPS(vgg) as in the official recipe: torchvision's VGG16 ImageNet weights, local.
model = dict(renderer=dict(type='gsplat'),
             lpips=dict(vgg_checkpoint='checkpoints/vgg16-397923af.pth', weight=0.05))
train_dataloader = dict(
    batch_size=2, num_workers=8, persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(**re10k, stage='train', flip_probability=0.5,
                 view_sampler=dict(type='bounded', num_targets=4, min_gap=25, max_gap=45)))
val_dataloader = dict(
    batch_size=1, num_workers=4, sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(**re10k, stage='test', view_sampler=dict(
        type='evaluation', index_path=f'{data_root}/evaluation_index_re10k.json')))
test_dataloader = val_dataloader
val_evaluator = [dict(type='NovelViewPSNR'),
                 dict(type='NovelViewLPIPS', vgg_checkpoint='checkpoints/vgg16-397923af.pth')]
test_evaluator = val_evaluator

optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=2e-4),
                     clip_grad=dict(max_norm=0.5))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=2000),
    dict(type='CosineAnnealingLR', T_max=300_000, eta_min=2e-6, by_epoch=False, begin=2000),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=300_000, val_interval=10_000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(checkpoint=dict(interval=5000), logger=dict(interval=50))
