"""benchmarks/compare_cuda.py's pure parts, without a GPU: arguments, FLOPs, timing, the table,
and the clear refusal where there is no GPU."""

import types

import pytest

from helpers import load_benchmark



@pytest.fixture(scope="module")
def bench():
    return load_benchmark("compare_cuda")


def test_default_shapes_are_the_standard_and_deepbench_ones(bench):
    args = bench.parse_args([])
    assert list(args.shapes)[:5] == ["latency", "speech", "speech-2L-bi", "char", "deepbench"]
    assert args.shapes["latency"] == (1, 150, 256, 256, 1, False, True)          # forward only
    assert args.shapes["speech-2L-bi"] == (32, 200, 40, 256, 2, True, False)
    training = {k: v for k, v in args.shapes.items() if k.startswith("db-")}
    assert sorted((v[3], v[0], v[1]) for v in training.values()) == [
        (256, 16, 150), (256, 64, 150), (512, 16, 25), (512, 64, 25), (1024, 16, 25), (1024, 64, 25)]
    assert all(v[2] == v[3] for v in training.values())                            # I = H
    small = {k: v for k, v in args.shapes.items() if k.startswith("small-")}
    assert sorted((v[3], v[0]) for v in small.values()) == [(H, B) for H in (256, 512, 1024) for B in (1, 2, 4, 8)]
    assert args.paths == ["graph", "persistent"]


def test_arguments(bench):
    args = bench.parse_args(["--only", "speech, char", "--repeat", "3", "--warmup", "0", "--device-id", "1"])
    assert list(args.shapes) == ["speech", "char"] and args.repeat == 3 and args.device_id == 1
    args = bench.parse_args(["--shape", "8,10,4,16,2,bi", "--paths", "persistent"])
    assert args.shapes == {"8,10,4,16,2,bi": (8, 10, 4, 16, 2, True, False)} and args.paths == ["persistent"]


@pytest.mark.parametrize("argv,message", [
    (["--only", "speech,nope"], "unknown shape(s) nope"),
    (["--shape", "1,2,3"], "--shape is B,T,I,H"),
    (["--shape", "1,2,x,4"], "needs integers"),
    (["--shape", "0,2,3,4"], "must be >= 1"),
    (["--repeat", "0"], "--repeat >= 1"),
    (["--paths", "graph,fused"], "--paths takes some of graph, persistent, got fused"),
], ids=["unknown-name", "short-shape", "non-integer", "zero-size", "zero-repeat", "unknown-path"])
def test_bad_arguments_name_the_option(bench, capsys, argv, message):
    with pytest.raises(SystemExit):
        bench.parse_args(argv)
    assert message in capsys.readouterr().err


def test_flop_count(bench):
    assert bench.gemm_flops(2, 3, 4, 5, 1, False, backward=False) == 2 * 2 * 3 * 20 * 9
    assert bench.gemm_flops(2, 3, 4, 5, 1, False, backward=True) == 3 * 2 * 2 * 3 * 20 * 9
    assert bench.gemm_flops(1, 1, 4, 5, 2, True, backward=False) == 2 * 2 * 20 * 9 + 2 * 2 * 20 * 15


def test_time_call_syncs_every_timed_call(bench):
    calls = []
    out = bench.time_call(lambda: calls.append("f"), warmup=2, repeat=3, sync=lambda: calls.append("s"))
    assert calls == ["f", "s", "f", "f", "s"] + ["f", "s"] * 3
    assert out["first_ms"] >= 0 and out["median_ms"] >= out["min_ms"] >= 0


def test_rates_ratios_and_table(bench):
    row = bench.add_rates({"case": "speech", "B": 32, "T": 200, "I": 40, "H": 256, "layers": 1,
                           "bidirectional": False, "forward_only": False,
                           "engines": {"graph": {"fwd_ms": 2.0, "fwd_bwd_ms": 6.0, "first_fwd_ms": 300.0},
                                       "persistent": {"fwd_ms": 1.0, "fwd_bwd_ms": 9.0},
                                       "torch": {"fwd_ms": 4.0, "fwd_bwd_ms": 6.0}}})
    assert row["ratios"] == {"graph": {"fwd": 0.5, "fwd_bwd": 1.0}, "persistent": {"fwd": 0.25, "fwd_bwd": 1.5}}
    assert row["best_fwd_ratio"] == 0.25 and row["best_fwd_bwd_ratio"] == 1.0
    assert row["engines"]["graph"]["fwd_tflops"] == pytest.approx(
        bench.gemm_flops(32, 200, 40, 256, 1, False, backward=False) / 2e-3 / 1e12)
    latency = bench.add_rates({"case": "latency", "B": 1, "T": 150, "I": 256, "H": 256, "layers": 1,
                               "bidirectional": False, "forward_only": True,
                               "engines": {"graph": {"fwd_ms": 1.0, "first_fwd_ms": 5.0},
                                           "persistent": {"skipped": "no persistent plan"}}})
    assert latency["best_fwd_bwd_ratio"] is None and latency["best_fwd_ratio"] is None
    table = bench.render_table({"shapes": [row, latency]})
    lines = table.splitlines()
    assert lines[0].startswith("| case |") and len(lines) == 4
    assert "| speech | 32 | 200 | 40 | 256 | 1 | 2.00 | 1.00 | 4.00 | 0.25x | 6.00 | 9.00 | 6.00 | 1.00x |" in table
    assert lines[3] == "| latency | 1 | 150 | 256 | 256 | 1 | 1.00 |" + "  |" * 8   # no plan, no torch, no backward


def test_a_failing_path_is_recorded_and_the_setting_restored(bench):
    """A launch that fails records its error for that engine; the backend's recurrence is the
    caller's again afterwards."""
    class Backend:
        recurrence = "auto"
        xp = None

        def recurrence_for(self, B, H, dtype, keep):
            raise RuntimeError("cudaErrorLaunchFailure: unspecified launch failure\n(more)")

    be = Backend()
    assert bench.bench_cuda(be, (1, 2, 3, 4, 1, False, False), 0, 1, "persistent") == {
        "error": "RuntimeError: cudaErrorLaunchFailure: unspecified launch failure"}
    assert be.recurrence == "auto"


def test_ratio(bench):
    assert bench.ratio(1.0, 2.0) == 0.5
    assert bench.ratio(None, 2.0) is None and bench.ratio(1.0, None) is None and bench.ratio(1.0, 0.0) is None


def test_gpu_facts(bench):
    runtime = types.SimpleNamespace(
        getDeviceProperties=lambda i: {"name": b"NVIDIA H200", "major": 9, "minor": 0, "totalGlobalMem": 141 * 2 ** 30},
        driverGetVersion=lambda: 12080, runtimeGetVersion=lambda: 12060)
    cupy = types.SimpleNamespace(__version__="13.6.0", cuda=types.SimpleNamespace(runtime=runtime))
    facts = bench.gpu_facts(cupy, 0)
    assert facts == {"gpu": "NVIDIA H200", "device_id": 0, "memory_gib": 141.0, "multiprocessors": None,
                     "compute_capability": "9.0", "driver_version": 12080, "runtime_version": 12060,
                     "cupy": "13.6.0"}


def test_without_a_gpu_it_exits_with_the_reason(bench, monkeypatch, tmp_path):
    from lstm_engine import backends
    monkeypatch.setattr(backends, "probe",
                        lambda name: backends.BackendInfo(name, False, "CuPy is not installed (install with: ...)"))
    with pytest.raises(SystemExit, match="needs a CUDA GPU and the cuda backend: CuPy is not installed"):
        bench.main(["--only", "speech", "--out", str(tmp_path / "r.json")])
    assert not (tmp_path / "r.json").exists()
