import subprocess
import sys

import pytest
import torch
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import DefaultScope

from videoscene.registry import (DOMAIN_REGISTRIES, MODELS, OPTIM_WRAPPERS, TIMESTEP_POLICIES,
                                 UnknownTypeError)

# Arguments an entry needs beyond its defaults to be built from a config.  Every entry of every
# domain registry is built below, so a new entry that cannot build from `dict(type=name)` adds a
# row here.
BUILD_ARGS: dict[tuple[str, str], dict] = {}


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
def test_every_domain_entry_builds_from_config(registry_name, entry):
    registry = DOMAIN_REGISTRIES[registry_name]
    obj = registry.build(dict(type=entry, **BUILD_ARGS.get((registry_name, entry), {})))
    assert isinstance(obj, registry.get(entry))


def test_unknown_type_lists_valid_entries():
    with pytest.raises(UnknownTypeError) as info:
        TIMESTEP_POLICIES.build(dict(type='fixd', t=3))
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
