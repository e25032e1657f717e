# Stage 2 (teacher) at toy scale on the CPU: a tiny random CogVideoX learns first+last-frame
# interpolation of 9-frame 32 x 32 videos of the synthetic default scenes.
# Build the model folder once:
#   python tools/make_tiny_backbone.py --arch cogvideox --out work_dirs/tiny_cogvideox
# then: python tools/train.py configs/teacher/tiny_cogvideox_synthetic.py
_base_ = ['../_base_/default_runtime.py', '../_base_/datasets/synthetic_clips_tiny.py']

# named apart from the distillation config of the same name (configs/distillation/), whose
# checkpoints would otherwise share one work dir with these
work_dir = 'work_dirs/teacher_tiny_cogvideox_synthetic'

tiny_model = 'work_dirs/tiny_cogvideox'
model = dict(
    type='InterpolationTeacher',
    backbone=dict(type='CogVideoX', pretrained=tiny_model,
                  prompt_embedding=tiny_model + '/prompt_embeds.safetensors'),
    # The tiny model is random, so there is no pretrained prior to keep: train the whole
    # transformer (the RE10K config trains the attention layers only, as the paper does).
    trainable='all')

train_dataloader = dict(batch_size=8)
# test split (base file): N-step interpolations (model.sample_steps, from noise)

optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.95), weight_decay=1e-4),
                     clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=30),
    dict(type='CosineAnnealingLR', T_max=270, eta_min=1e-4, by_epoch=False, begin=30, end=300),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=300)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=300, max_keep_ckpts=1),
                     logger=dict(type='LoggerHook', interval=10))
