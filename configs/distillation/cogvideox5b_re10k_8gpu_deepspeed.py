# Stage 3, the paper's recipe (configs/distillation/cogvideox_re10k.py) on 8 GPUs with DeepSpeed
# ZeRO-2 through MMEngine's DeepSpeedStrategy (needs: pip install --no-build-isolation -e '.[deepspeed]'):
#   python -m torch.distributed.run --nproc_per_node 8 tools/train.py THIS --launcher pytorch
# Plan the memory first:  python tools/plan_memory.py THIS --world-size 8 --gpu-memory 80GB
#
# ZeRO-2 splits the gradients and AdamW states of the trained tensors (student and DDPNet) over the
# GPUs; every GPU holds the whole float32 weights (frozen and trained) and the teacher / EMA target
# copies of the trained tensors, computing under bfloat16 autocast. ZeRO-3 (sharded weights) is
# refused (see videoscene/engine/strategies/deepspeed.py): shard weights with
# cogvideox5b_re10k_8gpu_fsdp.py. DeepSpeed steps ONE optimizer on the summed losses: the policy is
# its param group 'policy' (learning rate set to 0 when PolicyScheduleHook freezes it), and the
# gradient clipping covers student and policy together.
_base_ = ['./cogvideox_re10k.py']

model = dict(gradient_checkpointing=True)
model_wrapper_cfg = None                  # the strategy wraps the model
strategy = dict(type='DeepSpeedStrategy',
                zero_optimization=dict(stage=2, overlap_comm=True, contiguous_gradients=True),
                gradient_clipping=1.0,
                config=dict(torch_autocast=dict(enabled=True, dtype='bfloat16')))

optim_wrapper = dict(
    _delete_=True, constructor='DistillationOptimWrapperConstructor', type='DeepSpeedOptimWrapper',
    student=dict(optimizer=dict(type='AdamW', lr=1e-5, betas=(0.9, 0.95), weight_decay=1e-4)),
    policy=dict(lr=1e-4, weight_decay=0.0))
