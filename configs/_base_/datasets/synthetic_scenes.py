# The embedded default: procedurally generated rooms in the RE10K chunk format, generated into
# $VIDEOSCENE_CACHE (default ~/.cache/videoscene) on first use.
image_size = 64
synthetic = dict(type='SyntheticScenes', frames=120, height=image_size, width=image_size)

train_dataloader = dict(
    batch_size=2,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(**synthetic, stage='train', num_scenes=32,
                 view_sampler=dict(type='bounded', num_targets=4, min_gap=20, max_gap=45)),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=1,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(**synthetic, stage='test', num_scenes=4, num_eval_targets=8,
                 view_sampler=None),
)
test_dataloader = val_dataloader
val_evaluator = dict(type='NovelViewPSNR')
test_evaluator = val_evaluator
