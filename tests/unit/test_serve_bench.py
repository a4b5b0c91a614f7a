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


def test_rounds_give_medians_with_each_round_and_each_rounds_ratio() -> None:
    fast, ref = _result("onnx", 20.0, 0.44), _result("torch", 8.0, 0.45)
    for result, rates in ((fast, (30.0, 25.0)), (ref, (10.0, 10.0))):
        for round_no, rate in enumerate(rates, start=1):
            result.levels.append(Level(result.runtime, 8, [50.0] * 100, 100 / rate, cpu_cores=1.7,
                                       peak_rss_mb=1600.0 + round_no, errors=round_no - 1, client_cores=0.05,
                                       idle_cores=0.01 * round_no))
    text = format_results([fast, ref], "artifacts/x", 100)
    assert "3 round(s)" in text
    # 8 clients: rounds at 20, 30 and 25 notes/s -> median 25. The percentiles pool all 300 requests (40..139
    # ms and 200 of 50 ms: p95 and p99 are the 285th and 297th, 124 and 136); the most memory; all errors.
    assert "| onnx | 8 | 50.0 | 124.0 | 136.0 | 25.0 | 1.70 | 0.05 | 1602 | 1 | 20.0, 30.0, 25.0 |" in text
    assert "| onnx | 1 | 89.0 | 134.0 | 138.0 | 20.0 |" in text  # one round of a level: its own figures
    assert "| 8 | 2.50x | 2.50x, 3.00x, 2.50x |" in text
    assert "used at most 0.02 cores meanwhile" in text
