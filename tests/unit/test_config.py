"""Every shipped recipe validates; a typo fails loudly with the file and the field."""

from pathlib import Path

import pytest

from models.artifact import DEFAULT_MATCHER_SETTINGS
from models.errors import InputError
from training.config import HybridModelConfig, MatcherModelConfig, TransformerModelConfig, load_config

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_recipes_validate(path: Path) -> None:
    config = load_config(path)
    assert config.data.source == "../shared/datasets/codiesp"


def test_recommended_recipe_has_its_five_components() -> None:
    config = load_config(Path(__file__).resolve().parents[2] / "configs" / "hybrid-transformer.yaml")
    assert isinstance(config.model, HybridModelConfig)
    assert isinstance(config.model.transformer, TransformerModelConfig)
    assert config.model.retriever is not None and config.model.neighbors is not None
    assert config.model.linear is not None and config.model.matcher is not None
    assert config.decision.target_precision == 0.95


def test_typo_names_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {kind: linear, ngram_maxx: 2}\n")
    with pytest.raises(InputError, match=r"bad\.yaml.*ngram_maxx"):
        load_config(bad)
    bad.write_text("model: {kind: linear}\nthresholds: {accept: 2}\n")
    with pytest.raises(InputError, match=r"thresholds\.accept"):
        load_config(bad)


def test_a_recipe_can_say_every_setting_of_the_embedded_default() -> None:
    # A trained recipe chooses the default's conventions for its matcher by the same keys under `matcher:`.
    assert set(DEFAULT_MATCHER_SETTINGS) <= set(MatcherModelConfig.model_fields)
    config = MatcherModelConfig(**DEFAULT_MATCHER_SETTINGS)
    assert {k: getattr(config, k) for k in DEFAULT_MATCHER_SETTINGS} == DEFAULT_MATCHER_SETTINGS
