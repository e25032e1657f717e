# The 'medium' CogVideoX of benchmarks/bench_pipeline.py (12 blocks of 12 x 64 heads, 17 frames of
# 64 x 64) distilled as configs/distillation/tiny_cogvideox_synthetic.py does, with the
# DepthUnprojection reconstructor on the synthetic scenes' depth: a CPU check of
# tools/plan_memory.py --measure.  Build the backbone folder once:
#   python tools/make_tiny_backbone.py --arch cogvideox --out work_dirs/medium_cogvideox \
#       --height 64 --width 64 --frames 17 --layers 12 --heads 12 --head-dim 64
_base_ = ['../../configs/distillation/tiny_cogvideox_synthetic.py']

teacher = 'work_dirs/medium_cogvideox'
model = dict(
    backbone=dict(pretrained=teacher, prompt_embedding=teacher + '/prompt_embeds.safetensors'),
    reconstructor=dict(_delete_=True, type='DepthUnprojection'),
    reconstructor_checkpoint=None,
    renderer=dict(views_per_chunk=17),
    trainable='attention')
clips = dict(type='SyntheticScenes', frames=64, height=64, width=64, num_eval_targets=15)
train_dataloader = dict(
    batch_size=1,
    dataset=dict(_delete_=True, **clips, num_scenes=2,
                 view_sampler=dict(type='bounded', num_targets=15, min_gap=16, max_gap=24)))
