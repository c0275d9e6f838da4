"""Compressed models for other runtimes: ONNX graphs of flatjax BERTs (float32 and int8)."""

from flatjax.export.onnx_graph import to_onnx

__all__ = ["to_onnx"]
