"""Speed benchmark of the block-sparse attention: `python -m draftattn_cuda.bench`.

One module per job: shapes (model shapes and custom ones), options (the command line),
inputs and block_lists (what a case runs on), backends (ours, cuDNN, FA2, FlexAttention,
the CPU reference), timing (warm-up, medians, CUDA graphs), checks (output errors over real
rows), runner (cases -> rows), report (CSV, JSON, Markdown), plots (PNG), progress (a bar on
stderr) and cli (the entry point).
"""
