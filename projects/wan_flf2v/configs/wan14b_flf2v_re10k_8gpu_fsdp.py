# Stage 3 with Wan 2.1 FLF2V 14B on a cluster: the paper's 8-GPU FSDP2 recipe
# (configs/distillation/cogvideox5b_re10k_8gpu_fsdp.py: RE10K, 49 frames at 480 x 720, MVSplat,
# DDPNet, attention layers trained, bfloat16 weights gathered per block, float32 masters and AdamW
# states sharded, activations recomputed) with the backbone entry swapped for the plugin's.
#   python -m torch.distributed.run --nproc_per_node 8 tools/train.py THIS --launcher pytorch
# Plan first: python tools/plan_memory.py THIS --world-size 8 --gpu-memory 80GB
# Needs: a stage-2 Wan teacher exported as a diffusers Wan FLF2V folder (tools/export_teacher.py
# on a teacher config with this backbone, or Wan-AI/Wan2.1-FLF2V-14B-720P-diffusers itself), with
# the UMT5 prompt embedding saved as prompt_embeds.safetensors (see the plugin's README).
# Host memory: every rank builds the 14B transformer in float32 (load_transformer) before it is
# cast to bfloat16 and sharded: about 56 GB per rank at the peak, 8 x 56 GB of RAM on one node.
_base_ = ['../../../configs/distillation/cogvideox5b_re10k_8gpu_fsdp.py']
custom_imports = dict(imports=['projects.wan_flf2v'], allow_failed_imports=False)

teacher = 'checkpoints/wan_flf2v_interpolation'
model = dict(backbone=dict(_delete_=True, type='WanFLF2V', pretrained=teacher,
                           prompt_embedding=teacher + '/prompt_embeds.safetensors',
                           dtype='bfloat16', vae_tiling=True, vae_slicing=True),
             augment_conditions=False)
