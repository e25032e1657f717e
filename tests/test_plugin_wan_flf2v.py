"""Runs the Wan FLF2V plugin's tests (``projects/wan_flf2v/tests``) as part of ``make test``.

In a subprocess: importing the plugin registers ``WanFLF2V`` and ``FlowMatchEuler``, and the
registry tests here build every registered entry of the core registries."""
import os
import subprocess
import sys


def test_wan_flf2v_plugin_tests_pass(repo_root):
    env = {**os.environ, 'OMP_NUM_THREADS': '1',
           'PYTHONPATH': os.pathsep.join(filter(None, [repo_root, os.environ.get('PYTHONPATH')]))}
    result = subprocess.run(
        [sys.executable, '-m', 'pytest', 'projects/wan_flf2v/tests', '-q', '-p', 'no:cacheprovider'],
        cwd=repo_root, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert ' passed' in result.stdout and 'failed' not in result.stdout
