"""The PLM-ICD model: shapes, masking, windows and offsets, evidence (tiny local encoder)."""

import numpy as np
import torch

from models.transformer import NoteScores, TransformerCoder, TransformerSettings, encode_notes


def _coder(tiny_encoder_dir, n_labels: int = 3, **kw) -> TransformerCoder:
    settings = TransformerSettings(encoder=str(tiny_encoder_dir), window_tokens=16, max_windows=3, **kw)
    codes = ["E11.9", "I10", "N20.0"][:n_labels]
    return TransformerCoder.create(settings, codes, ["ICD-10-CM"] * n_labels,
                                   ["Type 2 diabetes", "Essential hypertension", "Kidney stone"][:n_labels])


def test_windows_and_offsets_point_into_the_text(tiny_encoder_dir) -> None:
    coder = _coder(tiny_encoder_dir)
    text = "Patient with essential hypertension. " * 6  # longer than one 16-token window
    short = "Kidney stone."
    encoded = encode_notes(coder.tokenizer, [text, short], coder.settings)
    assert encoded.input_ids.shape == (2, 3, 16)
    assert encoded.attention_mask[0].sum(dim=1).tolist()[:2] == [16, 16]  # the long note fills windows
    assert encoded.attention_mask[1, 1:].sum() == 0  # the short note has one window, the rest is padding
    for note, source in ((0, text), (1, short)):
        for start, end in encoded.offsets[note]:
            if start >= 0:
                assert 0 <= start < end <= len(source)
    starts = [s for s, _ in encoded.offsets[1] if s >= 0]
    assert short[starts[0] : starts[0] + 6].lower() == "kidney"


def test_shapes_and_padding_is_masked(tiny_encoder_dir) -> None:
    coder = _coder(tiny_encoder_dir)
    encoded = encode_notes(coder.tokenizer, ["Kidney stone.", "Essential hypertension and diabetes."], coder.settings)
    coder.model.eval()
    with torch.no_grad():
        logits, attention = coder.model(encoded.input_ids, encoded.attention_mask)
        assert logits.shape == (2, 3) and attention.shape == (2, 3, 3 * 16)
        mask = encoded.attention_mask.view(2, -1).bool()
        assert torch.all(attention[:, :, ~mask[0]][0] == 0)  # no attention on padding
        np.testing.assert_allclose(attention.sum(-1).numpy(), 1.0, rtol=1e-5)
        # Changing what sits under the padding changes nothing.
        noisy = encoded.input_ids.clone()
        noisy[~encoded.attention_mask.bool()] = 1000
        logits_noisy, _ = coder.model(noisy, encoded.attention_mask)
    np.testing.assert_allclose(logits.numpy(), logits_noisy.numpy(), rtol=1e-5, atol=1e-6)


def test_description_initialisation_sets_the_queries(tiny_encoder_dir) -> None:
    with_init = _coder(tiny_encoder_dir)
    without = _coder(tiny_encoder_dir, init_from_descriptions=False)
    queries = with_init.model.head.queries.detach()
    assert torch.allclose(queries.norm(dim=1), torch.full((3,), 4.0), atol=1e-4)
    assert not torch.allclose(queries, without.model.head.queries.detach())
    assert torch.equal(with_init.model.head.project.weight.detach(), torch.eye(32))


def test_probs_and_evidence(tiny_encoder_dir) -> None:
    coder = _coder(tiny_encoder_dir)
    text = "Essential hypertension.\nKidney stone on ultrasound."
    probs, sources = coder.score([text, "Diabetes."])
    assert probs.shape == (2, 3) and np.all((probs > 0) & (probs < 1))
    np.testing.assert_array_equal(coder.probs([text, "Diabetes."]), probs)
    spans = sources[0].evidence([0, 1, 2])
    assert set(spans) == {0, 1, 2} and any(spans.values())
    for segment in spans.values():
        assert segment is None or text[segment.start : segment.end] == segment.text


def test_a_notes_evidence_does_not_depend_on_the_notes_scored_with_it(tiny_encoder_dir) -> None:
    coder = _coder(tiny_encoder_dir)
    text = "Essential hypertension.\nKidney stone on ultrasound."
    _, (alone,) = coder.score([text])
    _, (_, together) = coder.score(["Type 2 diabetes. " * 10, text])
    assert together.evidence([0, 1, 2]) == alone.evidence([0, 1, 2])


def test_the_packed_head_gives_the_padded_heads_logits_and_argmax() -> None:
    """The fast path's head (real tokens only, two matrix products) against the reference head."""
    from models.transformer import LabelAttention

    torch.manual_seed(3)
    head = LabelAttention(hidden=24, n_labels=40, dropout=0.1).eval()
    with torch.no_grad():
        head.queries.mul_(8)  # peaked attention, as a trained head has
        lengths = [7, 19, 1]
        hidden = torch.randn(3, 20, 24)
        mask = torch.zeros(3, 20, dtype=torch.long)
        for note, n in enumerate(lengths):
            mask[note, :n] = 1
        logits, attention = head(hidden, mask)
        real = torch.cat([hidden[note, :n] for note, n in enumerate(lengths)])
        packed_logits, best = head.packed(real, lengths)
        torch.testing.assert_close(packed_logits, logits, atol=1e-5, rtol=1e-5)
        assert torch.equal(best, attention.argmax(dim=-1))
        bf16_logits, bf16_best = head.packed(real, lengths, torch.bfloat16)
        torch.testing.assert_close(bf16_logits, logits, atol=0.1, rtol=0.05)
        assert not torch.equal(bf16_logits, packed_logits)  # it did run in bf16
        assert (bf16_best == best).float().mean() > 0.9
        for note, n in enumerate(lengths):  # the one-note form the int8 head is exported from
            one_logits, one_best = head.one_note(hidden[note, :n])
            torch.testing.assert_close(one_logits, logits[note], atol=1e-5, rtol=1e-5)
            assert torch.equal(one_best, best[note])


def test_the_torch_runtime_runs_the_whole_model_in_the_shared_pass(tiny_encoder_dir) -> None:
    coder = _coder(tiny_encoder_dir)
    texts = ["Essential hypertension.\nKidney stone on ultrasound.", "Diabetes. " * 20]
    rows = coder._shared_pass(texts)
    assert coder.runtime == "torch" and all(isinstance(row, NoteScores) for row in rows)
    assert all(coder.engine.finish(coder.model, row) is row for row in rows)  # nothing is left per note
    encoded = encode_notes(coder.tokenizer, texts, coder.settings)
    with torch.no_grad():
        logits, attention = coder.model(encoded.input_ids, encoded.attention_mask)
    np.testing.assert_array_equal(np.stack([row.logits for row in rows]), logits.numpy())
    np.testing.assert_array_equal(np.stack([row.best_token for row in rows]), attention.argmax(dim=-1).numpy())
    np.testing.assert_array_equal(np.stack([row.offsets for row in rows]), encoded.offsets)
