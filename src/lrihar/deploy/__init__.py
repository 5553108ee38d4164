"""Getting trained models out for deployment: ONNX export with a parity check and a file hash."""
