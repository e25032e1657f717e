import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import DefaultScope

from videoscene.backbones.dynamicrafter import TINY_DYNAMICRAFTER
from videoscene.backbones.dynamicrafter.tiny import save_tiny_dynamicrafter
from videoscene.backbones.tiny import save_tiny_cogvideox, save_tiny_svd
from videoscene.registry import (DOMAIN_REGISTRIES, MODELS, OPTIM_WRAPPERS, TIMESTEP_POLICIES,
                                 UnknownTypeError)
from videoscene.schedulers import DDIMScheduler



def _tiny_cogvideox(folder):
    folder = save_tiny_cogvideox(folder / 'cogvideox')
    return dict(pretrained=str(folder), prompt_embedding=str(folder / 'prompt_embeds.safetensors'))


def _evaluation_index(folder):
    path = folder / 'evaluation_index.json'
    path.write_text(json.dumps({'scene': {'context': [0, 10], 'target': [3, 6]}}))
    return dict(index_path=str(path))


# Arguments an entry needs beyond its defaults, made in a temporary folder (local model folders,
# checkpoints).  Every entry of every domain registry is built below, so a new entry that cannot
# build from `dict(type=name)` adds a row here.
BUILD_ARGS: dict[tuple[str, str], Callable[[Path], dict]] = {
    ('video backbone', 'CogVideoX'): _tiny_cogvideox,
    ('video backbone', 'SVD'): lambda folder: dict(pretrained=str(save_tiny_svd(folder / 'svd'))),
    ('video backbone', 'DynamiCrafter'): lambda folder: dict(
        checkpoint=str(save_tiny_dynamicrafter(folder / 'dynamicrafter.ckpt')),
        **TINY_DYNAMICRAFTER),
    ('view sampler', 'bounded'): lambda folder: dict(num_targets=2, min_gap=3, max_gap=8),
    ('view sampler', 'evaluation'): _evaluation_index,
    ('view sampler', 'video'): _evaluation_index,
    ('view sampler', 'fixed'): lambda folder: dict(context=[0, 10], target=[5]),
    **{('timestep policy', name): lambda folder: dict(scheduler=DDIMScheduler(), latent_channels=4)
       for name in ('fixed', 'random', 'DDPNet')},
}


def _domain_entries():
    for name, registry in DOMAIN_REGISTRIES.items():
        registry.import_from_location()
        for entry in sorted(registry.module_dict):
            yield pytest.param(name, entry, id=f'{name}:{entry}')


def test_the_domain_registries_exist_in_the_videoscene_scope():
    assert set(DOMAIN_REGISTRIES) == {'reconstructor', 'renderer', 'camera path', 'video backbone',
                                      'noise scheduler', 'timestep policy', 'view sampler'}
    assert all(r.scope == 'videoscene' for r in DOMAIN_REGISTRIES.values())


@pytest.mark.parametrize('registry_name,entry', list(_domain_entries()))
def test_every_domain_entry_builds_from_config(registry_name, entry, tmp_path):
    registry = DOMAIN_REGISTRIES[registry_name]
    make_args = BUILD_ARGS.get((registry_name, entry), lambda folder: {})
    obj = registry.build(dict(type=entry, **make_args(tmp_path)))
    assert isinstance(obj, registry.get(entry))


def test_unknown_type_lists_valid_entries():
    with pytest.raises(UnknownTypeError) as info:
        TIMESTEP_POLICIES.build(dict(type='fixd', t=3), default_args=dict(
            scheduler=DDIMScheduler(), latent_channels=4))
    message = str(info.value)
    assert "'fixd'" in message and 'fixed' in message and 'random' in message
    assert 'custom_imports' in message


def test_unknown_model_through_mmengine_root_lists_entries():
    # The Runner builds with MMEngine's root registry and the default scope: same message.
    with DefaultScope.overwrite_default_scope('videoscene'):
        with pytest.raises(UnknownTypeError, match='Valid entries: .*BaseDataPreprocessor'):
            MMENGINE_MODELS.build(dict(type='NoSuchModel'))


def test_root_children_resolve_mmengine_entries():
    with DefaultScope.overwrite_default_scope('videoscene'):
        wrapper = OPTIM_WRAPPERS.build(dict(type='OptimWrapper', optimizer=torch.optim.SGD(
            [torch.nn.Parameter(torch.zeros(1))], lr=0.1)))
    assert type(wrapper).__name__ == 'OptimWrapper'
    assert MODELS.parent is MMENGINE_MODELS and MODELS.scope == 'videoscene'


def test_registry_module_prints_every_registry(repo_root):
    out = subprocess.run([sys.executable, '-m', 'videoscene.registry'], cwd=repo_root,
                         capture_output=True, text=True, check=True).stdout
    for name in DOMAIN_REGISTRIES:
        assert f'  {name} ' in out
    assert 'fixed, random' in out and 'DDIM' in out


def test_registry_module_lists_a_configs_plugins(repo_root):
    """With a config, the plugins of its custom_imports are listed; without, they are not."""
    command = [sys.executable, '-m', 'videoscene.registry']
    plain = subprocess.run(command, cwd=repo_root, capture_output=True, text=True, check=True).stdout
    config = 'projects/example_policy/configs/truncated_normal_policy.py'
    with_plugin = subprocess.run(command + [config], cwd=repo_root, capture_output=True,
                                 text=True, check=True).stdout
    assert 'truncated_normal' not in plain and 'truncated_normal' in with_plugin
