"""Post-training INT8 quantization (issue 4): calibration data, statistics, methods (minmax, percentile, KL,
KL + cosine fine search), the calibration table, QDQ lowering and the integer reference executor.

    from tcc.quant.calibrate import calibrate, report_lines       # spec + weights + data -> CalibrationTable
    from tcc.quant.settings import CalibrationRequest, CalibrationSettings  # what a calibration is asked for
    request = CalibrationRequest(CalibrationSettings(target="ort", method="kl+cos"), calib_size=128)
    table = calibrate("spec/ddsnet.yaml", "calib/", request, weights="GC.pth").table
    print("\n".join(report_lines(table, top=10))); table.save("calib.json")

    from tcc.quant.table.file import load_table, file_sha256            # tcc build --calib calib.json
    table = load_table("calib.json", spec_hash=model.spec_hash, weights_hash=file_sha256(weights))
    from tcc.quant.lower.qdq import to_qdq                               # FP32 ONNX (after passes) + table -> QDQ ONNX
    from tcc.quant.intgraph.match import plan                                # FP32 ONNX -> integer graph (tcc.intops)
    from tcc.quant.intgraph.qgraph import quantize_graph                    # + table -> every integer constant
    from tcc.quant.intgraph.reference import Reference, run_reference       # integer golden model

Modules: data (calibration samples), stats (ORT pass, histograms), methods (thresholds), quantizer (equation 8,
the one quantizer), cos_search (EasyQuant fine search), rules (target quantization rules), calibrate
(orchestration), settings (its settings records), prepare (the INT8 preflight), table (JSON + schema + hash
checks), plan (matching onto the integer op table), qgraph (the quantized graph and the table's validation against
it), qdq, reference, report, crops (histology crops for
calibration and judging). Benchmarks: `tcc bench` (tcc.benchmark).
"""

from .table.quantizer import dequantize, fake_quant, qrange, quantize, scale_for_threshold

__all__ = ["dequantize", "fake_quant", "qrange", "quantize", "scale_for_threshold"]
