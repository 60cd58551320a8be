"""`lstm-engine export`: a run folder or checkpoint as an ONNX file (lstm_engine.onnx_export)."""

from __future__ import annotations

import json

import click


@click.command()
@click.argument("checkpoint", metavar="RUN_OR_CHECKPOINT", type=click.Path(exists=True))
@click.argument("out", metavar="OUT.onnx", type=click.Path(dir_okay=False))
@click.option("--verify/--no-verify", default=True, show_default=True,
              help="Run the file in onnxruntime on a random ragged batch and compare its "
                   "probabilities with the engine's.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def export(checkpoint, out, verify, as_json):
    """Write a trained model (run folder or .safetensors file) as an ONNX model.

    The file holds the LSTM (ONNX LSTM operator), embedding or feature input, pooling, the
    dense head and the softmax; its metadata holds the labels and how to encode inputs
    (needs lstm-engine[onnx]).
    """
    from lstm_engine.onnx_export import OPSET, compare_with_engine
    from lstm_engine.predictor import load_predictor
    pred = load_predictor(checkpoint, backend="numpy")
    path = pred.to_onnx(out)
    check = compare_with_engine(pred.model, path) if verify else None
    cfg = pred.model.config
    report = {"out": str(path), "bytes": path.stat().st_size, "opset": OPSET, "task": pred.task.name,
              "labels": len(pred.labels), "source_dtype": cfg["dtype"],
              "inputs": ["tokens" if cfg["vocab_size"] is not None else "features", "lengths"],
              "outputs": ["probabilities", "logits"],
              "onnxruntime_max_abs_diff": None if check is None else check["max_abs_diff"]}
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"wrote {path} ({report['bytes'] / 2**20:.2f} MiB, opset {OPSET}): {pred.task.name} "
               f"classifier, {len(pred.labels)} labels; inputs {', '.join(report['inputs'])}; "
               f"outputs probabilities, logits")
    if cfg["dtype"] != "float32":
        click.echo(f"note: the {cfg['dtype']} weights were cast to float32 (onnxruntime's CPU LSTM "
                   f"is float32 only)")
    if check is not None:
        click.echo(f"onnxruntime vs the engine on {check['batch']} random sequences: "
                   f"max |difference| of the probabilities {check['max_abs_diff']:.2e}")
