"""Pure presentation: tables, figures and the model card of a run's results (no Metaflow, no training).

`summary.RunSummary` is what a run produced; `tables` and `plots` turn results into DataFrames and
matplotlib figures; `model_card` into the exported model's README.md.
"""
