# Stage 1 with pixelSplat on the synthetic default at 64x64 (slow on a CPU: 119M parameters).
_base_ = ['../mvsplat/mvsplat_synthetic_cpu.py']

model = dict(reconstructor=dict(_delete_=True, type='pixelSplat'))
