default_scope = 'videoscene'

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=10),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # In the videoscene scope 'CheckpointHook' is AtomicCheckpointHook (videoscene/engine/hooks):
    # MMEngine's arguments, with atomic writes and deletion of old checkpoints only after the new one.
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=500, max_keep_ckpts=3,
                    save_last=True),
    sampler_seed=dict(type='DistSamplerSeedHook'),
)

custom_hooks = [dict(type='IterationSeedHook')]

log_processor = dict(by_epoch=False, window_size=10)
log_level = 'INFO'
randomness = dict(seed=0, deterministic=False)
load_from = None
resume = False
# resume=True without load_from, when the work dir holds checkpoints but none is readable: stop with
# a CheckpointError (False) or train from iteration 0 anyway (True; train.py --restart-if-unreadable).
restart_if_unreadable = False
