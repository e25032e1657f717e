# Stage 3, the paper's recipe: 3D-aware leap flow distillation of the fine-tuned CogVideoX-5B
# interpolation teacher with DDPNet on RealEstate10K, 49 frames at 480 x 720, MVSplat frozen,
# attention layers only, AdamW, 20k iterations, DDPNet trained for the first 4000.
# Needs: the stage-2 teacher exported as a model folder (tools/export_teacher.py, or the
# CogVideoX-Interpolation release) with its prompt embedding and the empty-prompt embedding
# (tools/encode_prompt.py --prompt ""), the official MVSplat RE10K checkpoint, RE10K chunks.
# 8 GPUs: python -m torch.distributed.run --nproc_per_node 8 tools/train.py THIS --launcher pytorch
_base_ = ['../_base_/default_runtime.py']

teacher = 'checkpoints/cogvideox_interpolation'
data_root = 'data/re10k'
model = dict(
    type='LeapFlowDistillation',
    backbone=dict(type='CogVideoX', pretrained=teacher,
                  prompt_embedding=teacher + '/prompt_embeds.safetensors',
                  negative_prompt_embedding=teacher + '/negative_prompt_embeds.safetensors',
                  vae_tiling=True, vae_slicing=True),
    reconstructor=dict(type='MVSplat', checkpoint='checkpoints/mvsplat_re10k.ckpt'),
    renderer=dict(type='gsplat'),
    # the official release's leap is t = 549; DDPNet chooses among the solver timesteps <= 799
    policy=dict(type='DDPNet', solver_steps=50, max_timestep=799),
    trainable='attention',
    gradient_checkpointing=True,
    solver_steps=50,
    loss='huber',
    guidance_scale=1.0,      # the official one-step inference has no CFG; raise to guide the teacher
    entropy_weight=1e-3)
model_wrapper_cfg = dict(type='MMSeparateDistributedDataParallel', broadcast_buffers=False)

re10k = dict(type='RE10KDataset', root=data_root, image_shape=(480, 720))
train_dataloader = dict(
    batch_size=1,            # x 8 GPUs; the paper's batch is 2 in total
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(**re10k, stage='train',
                 view_sampler=dict(type='bounded', num_targets=47, min_gap=48, max_gap=96)))
# The VideoScene benchmark: 49 frames, every second frame from context a to a + 96.
test_dataloader = dict(
    batch_size=1, num_workers=4, sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(**re10k, stage='test', view_sampler=dict(
        type='video', index_path=f'{data_root}/evaluation_index_re10k_video.json', num_frames=49)))
test_evaluator = [dict(type='NovelViewPSNR')]
test_cfg = dict(type='TestLoop')

# bf16 autocast over float32 trained tensors; the learning rate is a choice (the paper's figure
# is lost in our copy of its text).
optim_wrapper = dict(
    constructor='DistillationOptimWrapperConstructor',
    student=dict(type='AmpOptimWrapper', dtype='bfloat16',
                 optimizer=dict(type='AdamW', lr=1e-5, betas=(0.9, 0.95), weight_decay=1e-4),
                 clip_grad=dict(max_norm=1.0)),
    policy=dict(type='AmpOptimWrapper', dtype='bfloat16', optimizer=dict(type='Adam', lr=1e-4)))
param_scheduler = [dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0, end=500)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=20_000)
custom_hooks = [
    dict(type='IterationSeedHook'),
    dict(type='TargetEMAHook', decay=0.95),
    dict(type='PolicyScheduleHook', train_iters=4000),
    dict(type='DistillationVisualizationHook', interval=1000),
]
default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=1000,
                                     max_keep_ckpts=3, save_last=True),
                     logger=dict(type='LoggerHook', interval=20))
