"""Datasets: `sources` (the registry, downloads, verification), `corpora` (named texts made from
them, such as `english-mix`), `text` (language-model batches),
`labelled` (classification) and `instructions` (instruction tuning).

Import the submodule you need: `gptlab.data.sources` needs only the standard library and tqdm,
`gptlab.data.text` imports numpy and torch.
"""
