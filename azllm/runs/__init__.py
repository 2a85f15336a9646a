"""Run access through the Metaflow client: find a run (`find`, the one way), its model parts (`parts`),
its results as tables and figures for the notebook (`explore`), `azllm export` (`export`) and
`azllm chat` (`chat`)."""
