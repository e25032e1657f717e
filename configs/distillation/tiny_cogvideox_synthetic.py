# Stage 3 at toy scale on the CPU: leap-flow distillation of a tiny CogVideoX teacher with DDPNet,
# on 9-frame 32 x 32 videos of the synthetic default scenes.
# Prerequisites (tools/demo.py runs this chain and caches it):
#   python tools/train.py configs/mvsplat/mvsplat_synthetic_cpu.py                       # stage 1
#   python tools/make_tiny_backbone.py --arch cogvideox --out work_dirs/tiny_cogvideox
#   python tools/train.py configs/teacher/tiny_cogvideox_synthetic.py                    # stage 2
#   python tools/export_teacher.py configs/teacher/tiny_cogvideox_synthetic.py \
#       work_dirs/teacher_tiny_cogvideox_synthetic/iter_300.pth --out work_dirs/tiny_cogvideox_teacher
# then: python tools/train.py configs/distillation/tiny_cogvideox_synthetic.py
_base_ = ['../_base_/default_runtime.py', '../_base_/datasets/synthetic_clips_tiny.py']

teacher = 'work_dirs/tiny_cogvideox_teacher'
model = dict(
    type='LeapFlowDistillation',
    backbone=dict(type='CogVideoX', pretrained=teacher,
                  prompt_embedding=teacher + '/prompt_embeds.safetensors'),
    # the stage-1 MVSplat of configs/mvsplat/mvsplat_synthetic_cpu.py (same architecture)
    reconstructor=dict(type='MVSplat', num_transformer_layers=2, num_depth_candidates=32),
    reconstructor_checkpoint='work_dirs/mvsplat_synthetic_cpu/iter_300.pth',
    renderer=dict(type='torch', views_per_chunk=9),
    policy=dict(type='DDPNet', max_timestep=799, channels=(16, 16, 32, 32), groups=8),
    trainable='all',        # the tiny teacher trained all of its transformer too
    solver_steps=50,
    loss='huber',
    entropy_weight=1e-3)
# Under a distributed launcher: the backbone and the policy each in DDP, this model's train_step.
model_wrapper_cfg = dict(type='MMSeparateDistributedDataParallel', broadcast_buffers=False)

# test split (base file): one-step videos (student + DDPNet, greedy)

optim_wrapper = dict(
    constructor='DistillationOptimWrapperConstructor',
    student=dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=2e-4, weight_decay=1e-4),
                 clip_grad=dict(max_norm=1.0)),
    policy=dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-3)))
# one schedule per optimizer (a dict keyed 'student' / 'policy' sets them apart)
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=20)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=200)
custom_hooks = [
    dict(type='IterationSeedHook'),
    dict(type='TargetEMAHook', decay=0.95),
    dict(type='PolicyScheduleHook', train_iters=150),
    dict(type='DistillationVisualizationHook', interval=100),
]
default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=100,
                                     max_keep_ckpts=2),
                     logger=dict(type='LoggerHook', interval=10))
