# The plugin is imported by name; no edit to videoscene/ is needed.
custom_imports = dict(imports=['projects.example_policy'], allow_failed_imports=False)

policy = dict(type='truncated_normal', mean=549.0, std=50.0, low=400, high=700)
