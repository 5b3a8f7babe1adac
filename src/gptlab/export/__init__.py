"""Exports other runtimes load: ONNX (checked with ONNX Runtime) and `torch.export` programs.

Both hold the model as one pure function with its KV cache as inputs and outputs (`step.py`);
`onnx.py` writes and runs the ONNX graph, `program.py` the torch.export program. (The Hugging
Face format is `gptlab.pretrained.export_hf`.)
"""
