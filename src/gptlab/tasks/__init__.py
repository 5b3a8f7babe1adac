"""Tasks: what a kind of fine-tuning gives the task-agnostic trainer (batches, a loss, metrics)
and how its runs are evaluated. `classification`: labelled text to classes;
`instruction`: Alpaca prompts to responses."""
