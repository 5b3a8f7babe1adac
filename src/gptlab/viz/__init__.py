"""Pictures of a model, as PNG files: what `gptlab viz` draws.

- `plot_embeddings`: token embeddings projected to 2-D (PCA, t-SNE, UMAP), labelled;
- `plot_positions`: positional-encoding tables and the cosine similarity of positions;
- `plot_attention`: attention weights of a prompt, per layer and head;
- `plot_curves`: loss and learning rate from a run's metrics.jsonl;
- `confusion_matrix_figure`: a classifier's confusion matrix, from its evaluation report;
- `plot_update_spectrum`: how much of a full fine-tune's weight update the top r singular
  directions hold (`update_spectrum`), the bet LoRA makes;
- `plot_quantization_error`: how far int8 per tensor, per channel and int4 in groups move a
  model's weights (`relative_errors`).
"""

from gptlab.viz.adapters import plot_update_spectrum, update_spectrum
from gptlab.viz.attention import attention_weights, plot_attention
from gptlab.viz.classification import confusion_matrix_figure, read_report
from gptlab.viz.curves import plot_curves, read_metrics
from gptlab.viz.embeddings import plot_embeddings, project_2d
from gptlab.viz.positions import cosine_similarity_matrix, plot_positions
from gptlab.viz.quantization import plot_quantization_error, relative_errors

__all__ = [
    "attention_weights",
    "confusion_matrix_figure",
    "cosine_similarity_matrix",
    "plot_attention",
    "plot_curves",
    "plot_embeddings",
    "plot_positions",
    "plot_quantization_error",
    "plot_update_spectrum",
    "project_2d",
    "read_metrics",
    "read_report",
    "relative_errors",
    "update_spectrum",
]
