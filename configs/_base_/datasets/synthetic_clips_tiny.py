# The synthetic default as 9-frame 32 x 32 clips for the tiny CPU stage-2/stage-3 configs: the
# context pair 8-24 scene frames apart with the 7 frames strictly between them as targets.
clips = dict(type='SyntheticScenes', frames=64, height=32, width=32, num_eval_targets=7)

train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(**clips, num_scenes=16,
                 view_sampler=dict(type='bounded', num_targets=7, min_gap=8, max_gap=24)))

# held-out scenes, scored against their true frames (what each model generates: see its config)
test_dataloader = dict(
    batch_size=1,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(**clips, stage='test', num_scenes=4))
test_evaluator = [dict(type='NovelViewPSNR')]
test_cfg = dict(type='TestLoop')
