"""tools/encode_prompt.py (T5 once, offline) and tools/make_tiny_backbone.py."""
import importlib.util
import os.path as osp

import pytest
import torch
from safetensors import safe_open
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

from videoscene.registry import VIDEO_BACKBONES

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def tool(name):
    """The tool script as a module (in-process: a subprocess would re-import torch each time)."""
    spec = importlib.util.spec_from_file_location(name, osp.join(REPO, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def tiny_t5(tmp_path_factory):
    """A random 2-layer T5 encoder and a small unigram tokenizer, saved like the real ones."""
    root = tmp_path_factory.mktemp('t5')
    words = ['<pad>', '</s>', '<unk>'] + [f'\u2581{w}' for w in 'a static room with chair'.split()]
    words += list('abcdefghijklmnopqrstuvwxyz')
    tokenizer = Tokenizer(models.Unigram([(w, 0.0 if i < 3 else -1.0) for i, w in enumerate(words)], unk_id=2))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    tokenizer.post_processor = processors.TemplateProcessing(single='$A </s>', special_tokens=[('</s>', 1)])
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token='<pad>', eos_token='</s>',
                            unk_token='<unk>').save_pretrained(root / 'tokenizer')
    torch.manual_seed(0)
    T5EncoderModel(T5Config(vocab_size=len(words), d_model=32, d_kv=8, d_ff=64, num_layers=2,
                            num_heads=2)).save_pretrained(root / 'text_encoder')
    return root


def test_encode_prompt_writes_the_t5_hidden_state(tiny_t5, tmp_path):
    out = tmp_path / 'prompt.safetensors'
    tool('encode_prompt').main(['--text-encoder', str(tiny_t5 / 'text_encoder'), '--tokenizer',
                                str(tiny_t5 / 'tokenizer'), '--prompt', 'a static room',
                                '--max-length', '8', '--out', str(out)])
    with safe_open(out, 'pt') as handle:
        embedding = handle.get_tensor('prompt_embeds')
        assert handle.metadata()['prompt'] == 'a static room'
    assert embedding.shape == (1, 8, 32)
    # the same as running T5 on the padded token ids (3 words + </s>, then padding)
    encoder = T5EncoderModel.from_pretrained(tiny_t5 / 'text_encoder').eval()
    ids = torch.tensor([[3, 4, 5, 1, 0, 0, 0, 0]])
    with torch.no_grad():
        torch.testing.assert_close(embedding, encoder(ids).last_hidden_state, rtol=1e-5, atol=1e-5)

    # CogVideoX takes it when its text width and length match
    model = tmp_path / 'cogvideox'
    tool('make_tiny_backbone').main(['--arch', 'cogvideox', '--out', str(model), '--height', '16',
                                     '--width', '16'])
    backbone = VIDEO_BACKBONES.build(dict(type='CogVideoX', pretrained=str(model), prompt_embedding=str(out)))
    torch.testing.assert_close(backbone.prompt_embeds, embedding)


def test_encode_prompt_errors(tiny_t5, tmp_path, capsys):
    encode_prompt = tool('encode_prompt')
    with pytest.raises(FileNotFoundError, match='T5 text encoder: model folder .* does not exist'):
        encode_prompt.main(['--text-encoder', str(tmp_path / 'nowhere'), '--tokenizer',
                            str(tiny_t5 / 'tokenizer'), '--prompt', 'x', '--out', str(tmp_path / 'p.safetensors')])
    with pytest.raises(SystemExit):
        encode_prompt.main(['--text-encoder', str(tiny_t5 / 'text_encoder'), '--tokenizer',
                            str(tiny_t5 / 'tokenizer'), '--prompt', 'x', '--out', str(tmp_path / 'p.pt')])
    assert '--out must end with .safetensors' in capsys.readouterr().err


def test_make_tiny_svd_loads(tmp_path):
    tool('make_tiny_backbone').main(['--arch', 'svd', '--out', str(tmp_path / 'svd')])
    for sub in ('unet', 'vae', 'image_encoder', 'feature_extractor', 'scheduler'):
        assert (tmp_path / 'svd' / sub).is_dir()
    backbone = VIDEO_BACKBONES.build(dict(type='SVD', pretrained=str(tmp_path / 'svd')))
    assert backbone.latent_shape(5, 16, 16) == (5, 4, 8, 8)
