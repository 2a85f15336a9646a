"""Flow glue, used only by flows/azllm_flow.py: what each step does first (`step`), how it stores what it
makes (`artifacts`), its Metaflow cards (`cards`), and the `end` step (`end`)."""
