# The plugin is imported by name; no edit to videoscene/ is needed.
custom_imports = dict(imports=['projects.example_policy'], allow_failed_imports=False)

# `scheduler` and `latent_channels` are given by whoever builds the policy (the distillation model,
# the pipeline); to build it alone: TIMESTEP_POLICIES.build(policy, default_args=dict(scheduler=...,
# latent_channels=...)).
policy = dict(type='truncated_normal', mean=549.0, std=50.0, low=400, high=700)
