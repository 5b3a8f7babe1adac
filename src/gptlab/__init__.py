"""gptlab: a GPT-2 toolkit written from scratch in PyTorch.

`import gptlab` stays light: the submodules (`gptlab.models.gpt`, `gptlab.tokenizers`, ...)
import torch and friends when you import them.
"""

__version__ = "0.1.0"
