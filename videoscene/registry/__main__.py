"""``python -m videoscene.registry [CONFIG]``: print every registry with its entries; with a config,
after importing its ``custom_imports`` (the plugins it uses; ``Config.fromfile`` imports them)."""
import argparse

from mmengine.config import Config

from videoscene.registry import describe

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument('config', nargs='?', help='a config whose custom_imports (plugins) to import first')
if (config := parser.parse_args().config) is not None:
    Config.fromfile(config)
print(describe())
