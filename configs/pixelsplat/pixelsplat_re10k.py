# Stage 1: pixelSplat on RealEstate10K at 256x256 (official recipe: Adam 1.5e-4, batch 7 per GPU,
# near/far from the context baseline), rendered with gsplat on CUDA.
#   torchrun --nproc-per-node 8 tools/train.py configs/pixelsplat/pixelsplat_re10k.py --launcher pytorch
_base_ = ['../mvsplat/mvsplat_re10k.py']

model = dict(reconstructor=dict(_delete_=True, type='pixelSplat'))
optim_wrapper = dict(optimizer=dict(lr=1.5e-4))
