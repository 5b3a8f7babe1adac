"""Datasets: `sources` (the registry, downloads, verification) and `text` (language-model batches).

Import the submodule you need: `gptlab.data.sources` needs only the standard library and tqdm,
`gptlab.data.text` imports numpy and torch.
"""
