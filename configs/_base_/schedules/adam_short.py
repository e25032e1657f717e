# A short iteration-based schedule for CPU runs on the synthetic default.
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=2e-4),
                     clip_grad=dict(max_norm=0.5))
param_scheduler = [dict(type='CosineAnnealingLR', T_max=200, eta_min=2e-5, by_epoch=False)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=200, val_interval=100)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
