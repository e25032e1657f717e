# Stage 2 (teacher): fine-tune CogVideoX-5B-I2V into a first+last-frame interpolation model on
# RealEstate10K, as the paper does: 49-frame 480 x 720 videos (context pair at both ends, 47 target
# frames evenly between), attention layers of the transformer blocks only, AdamW, 900 warm-up
# iterations, batch 2 (per GPU here; the paper's batch is 2 in total on 8 A100s).
# Needs: the 5B I2V folder (transformer/, vae/, scheduler/) and a prompt embedding from
#   python tools/encode_prompt.py --text-encoder CogVideoX-5b-I2V/text_encoder \
#       --tokenizer CogVideoX-5b-I2V/tokenizer --prompt "..." --out checkpoints/prompt_embeds.safetensors
# Multi-GPU: python -m torch.distributed.run --nproc_per_node 8 tools/train.py THIS --launcher pytorch
_base_ = ['../_base_/default_runtime.py']

# named apart from the distillation config of the same name (configs/distillation/), whose
# checkpoints would otherwise share one work dir with these
work_dir = 'work_dirs/teacher_cogvideox_re10k'

pretrained = 'checkpoints/CogVideoX-5b-I2V'
model = dict(
    type='InterpolationTeacher',
    backbone=dict(type='CogVideoX', pretrained=pretrained,
                  prompt_embedding='checkpoints/prompt_embeds.safetensors',
                  vae_tiling=True, vae_slicing=True),
    trainable='attention',
    gradient_checkpointing=True)

train_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='RE10KDataset', root='data/re10k', stage='train', image_shape=(480, 720),
                 # 47 targets strictly between the context pair: 49-frame videos
                 view_sampler=dict(type='bounded', num_targets=47, min_gap=48, max_gap=96)))

# The VideoScene benchmark: 49 frames, every second frame from context a to a + 96.
test_dataloader = dict(
    batch_size=1, num_workers=4, sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='RE10KDataset', root='data/re10k', stage='test', image_shape=(480, 720),
                 view_sampler=dict(type='video', num_frames=49,
                                   index_path='data/re10k/evaluation_index_re10k_video.json')))
test_evaluator = [dict(type='NovelViewPSNR')]
test_cfg = dict(type='TestLoop')

# bf16 autocast over float32 weights (AdamW state for the attention layers only). The learning
# rate is a choice: the paper's figure is lost in our copy of its text.
optim_wrapper = dict(type='AmpOptimWrapper', dtype='bfloat16',
                     optimizer=dict(type='AdamW', lr=2e-5, betas=(0.9, 0.95), weight_decay=1e-4),
                     clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=900),
    dict(type='ConstantLR', factor=1.0, by_epoch=False, begin=900),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=10000)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=1000,
                                     max_keep_ckpts=3, save_last=True))
