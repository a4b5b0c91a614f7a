"""The HTTP benchmark's report: what it prints from measured levels (the measuring needs a server and
the trained model, so it is a command, not a test)."""

from __future__ import annotations

import pytest

from eval.serve_bench import Level, RuntimeResult, cpu_model, format_results, main


def _result(runtime: str, notes_per_s: float, map_d: float) -> RuntimeResult:
    result = RuntimeResult(runtime, startup_s=20.0, rss_after_start_mb=1200.0, map_d=map_d, map_p=0.37)
    for clients in (1, 8):
        seconds = 100 / notes_per_s
        result.levels.append(Level(runtime, clients, [40.0 + i for i in range(100)], seconds, cpu_cores=1.8,
                                   peak_rss_mb=1500.0, errors=0, client_cores=0.05))
    return result


def test_the_report_puts_both_runtimes_side_by_side_with_ratios_and_the_client_cpu() -> None:
    text = format_results([_result("onnx", 20.0, 0.44), _result("torch", 8.0, 0.45)], "artifacts/x", 100)
    assert cpu_model() in text
    assert "| onnx | 8 | 89.0 | 134.0 | 138.0 |" in text  # nearest-rank p50, p95, p99 of 40..139 ms
    assert "| 20.0 | 1.80 | 0.05 | 1500 | 0 |" in text  # notes/s, server cores, client cores, RSS, errors
    assert "| 8 | 2.50x |" in text
    assert "D -0.0100, P +0.0000" in text


def test_the_report_names_the_server_settings_it_was_given() -> None:
    results = [_result("onnx", 20.0, 0.44)]
    assert "server settings: defaults" in format_results(results, "artifacts/x", 100)
    text = format_results(results, "artifacts/x", 100, {"head_precision": "float32", "batch_max_notes": "8"})
    assert "server settings: CODER_HEAD_PRECISION=float32, CODER_BATCH_MAX_NOTES=8" in text


@pytest.mark.parametrize(("argv", "message"), [
    (["--batch-max-notes", "0"], "--batch-max-notes must be at least 1, got 0"),
    (["--batch-wait-ms", "-1"], "--batch-wait-ms must be 0 or more, got -1.0"),
])
def test_bad_pass_settings_are_refused_before_any_server_starts(argv: list[str], message: str,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--artifact", "nowhere", *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
