# Stage 1: MVSplat (official re10k architecture) trained through its renders.
model = dict(
    type='GaussianReconstruction',
    reconstructor=dict(type='MVSplat'),
    renderer=dict(type='torch', background=(0.0, 0.0, 0.0), views_per_chunk=4),
)
