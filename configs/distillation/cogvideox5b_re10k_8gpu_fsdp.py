# Stage 3, the paper's recipe (configs/distillation/cogvideox_re10k.py: CogVideoX-5B, RE10K,
# 49 x 480 x 720, attention layers trained, DDPNet) sharded over 8 GPUs with torch's FSDP2:
#   python -m torch.distributed.run --nproc_per_node 8 tools/train.py THIS --launcher pytorch
#   (slurm: srun ... python tools/train.py THIS --launcher slurm)
# Plan the memory first:  python tools/plan_memory.py THIS --world-size 8 --gpu-memory 80GB
#
# What each rank holds (LeapFlowDistillation.shard): the denoiser's blocks and the denoiser are
# fully_shard units, so its frozen weights (bfloat16), the student's trained tensors (float32
# master weights), their gradients and AdamW states, and the teacher (bfloat16) and EMA target
# (float32) copies of the trained tensors are 1/8 per rank; the VAE, the prompt embeddings,
# MVSplat and DDPNet (in DDP) are whole on every rank.  Weights are gathered in bfloat16 one
# block at a time, gradients reduce-scattered in float32; activations are recomputed per block.
# Checkpoints are folders (iter_N.pth/) every rank writes its shards into; resume on any number
# of GPUs; tools/consolidate_checkpoint.py makes one file for tools/infer.py (which also reads
# the folder itself).
_base_ = ['./cogvideox_re10k.py']

model = dict(backbone=dict(dtype='bfloat16'), gradient_checkpointing=True)
model_wrapper_cfg = None                  # the strategy wraps the model
strategy = dict(type='FSDP2Strategy',
                mixed_precision=dict(param_dtype='bfloat16', reduce_dtype='float32'),
                reshard_after_forward=True)

# the strategy's mixed precision replaces autocast: plain optimizer wrappers
optim_wrapper = dict(
    student=dict(_delete_=True, type='OptimWrapper',
                 optimizer=dict(type='AdamW', lr=1e-5, betas=(0.9, 0.95), weight_decay=1e-4),
                 clip_grad=dict(max_norm=1.0)),
    policy=dict(_delete_=True, type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-4)))
