"""Architecture presets of the scaling ladder (probe/presets): offline configs whose sizes
are the published ones, used by ``random:<name>`` only when the Hub cannot give a config."""
from __future__ import annotations

import json

import pytest

from probe.errors import ProbeError
from probe.presets import PRESETS, TOKENIZERS, get_preset, preset_names

# Published parameter counts (model cards / papers), in millions, of what the preset
# builds: the encoder (mT5: encoder only, so the card's full-model figure does not apply).
PUBLISHED_M = {
    "bert-base-multilingual-cased": 178, "xlm-roberta-base": 278, "xlm-roberta-large": 560,
    "multilingual-e5-small": 118, "multilingual-e5-base": 278, "multilingual-e5-large": 560,
    "mdeberta-v3-base": 278,
}
DEPTH_WIDTH = {
    "bert-base-multilingual-cased": (12, 768), "xlm-roberta-base": (12, 768), "xlm-roberta-large": (24, 1024),
    "multilingual-e5-small": (12, 384), "multilingual-e5-base": (12, 768), "multilingual-e5-large": (24, 1024),
    "mdeberta-v3-base": (12, 768), "mt5-small": (8, 512), "mt5-base": (12, 768),
}


def test_every_preset_is_registered_with_a_known_tokenizer_and_hub_alias():
    assert set(preset_names()) == set(DEPTH_WIDTH)
    for name, preset in PRESETS.items():
        assert preset.tokenizer in TOKENIZERS and preset.config_path.is_file()
        assert get_preset(preset.hub_id) is preset and get_preset(name) is preset
    assert get_preset("no-such-model") is None


@pytest.mark.parametrize("name", sorted(DEPTH_WIDTH))
def test_preset_configs_build_the_published_architecture(name):
    import torch
    import transformers

    from probe.encoders import model_from_config

    cfg_dict = json.loads(PRESETS[name].config_path.read_text())
    config = transformers.AutoConfig.for_model(cfg_dict.pop("model_type"), **cfg_dict)
    assert (config.num_hidden_layers, config.hidden_size) == DEPTH_WIDTH[name]
    with torch.device("meta"):  # no memory, no init time
        model = model_from_config(config)
    n = sum(p.numel() for p in model.parameters()) / 1e6
    if name in PUBLISHED_M:
        assert n == pytest.approx(PUBLISHED_M[name], rel=0.02)
    else:  # mT5: the encoder alone
        assert type(model).__name__ == "MT5EncoderModel"


def test_random_name_uses_the_preset_only_when_the_hub_gives_no_config(monkeypatch, tmp_path):
    import probe.encoders as enc
    import probe.presets as presets

    monkeypatch.setenv("PROBE_HOME", str(tmp_path / "home"))
    built = []

    def fake_build(name):  # the preset directory, without needing the e5 tokenizer here
        out = tmp_path / name
        out.mkdir(exist_ok=True)
        (out / "config.json").write_text(PRESETS[name].config_path.read_text())
        built.append(name)
        return out

    monkeypatch.setattr(presets, "build_preset", fake_build)
    spec = enc.resolve_encoder("random:xlm-roberta-large@3")  # offline here: the Hub gives nothing
    assert built == ["xlm-roberta-large"] and "architecture preset of FacebookAI/xlm-roberta-large" in spec.note
    with pytest.raises(ProbeError, match="cannot load model"):
        enc.resolve_encoder("random:not-a-preset-model")

    hub_dir = tmp_path / "from-hub"  # a model the Hub (or its cache) provides wins over the preset
    hub_dir.mkdir()
    (hub_dir / "config.json").write_text(json.dumps({"model_type": "xlm-roberta", "num_hidden_layers": 2}))
    monkeypatch.setattr(enc, "_resolve_hf", lambda name, local_only=False: enc.EncoderSpec(
        name=name, fingerprint="h" * 64, source=str(hub_dir), loader=lambda: None))
    spec = enc.resolve_encoder("random:xlm-roberta-large")
    assert spec.source == str(hub_dir) and built == ["xlm-roberta-large"]
