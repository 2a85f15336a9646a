"""azllm.tokenizer: Llama-3-style byte-level BPE for Azerbaijani, and the arms' vocabularies.

- `llama3`: the Llama 3 / 3.2 tokenizer rebuilt offline (checked against tiktoken), its regex,
  special tokens and chat template;
- `train`: `train_tokenizer` / `train_sweep` (byte-level BPE with Llama 3's settings);
- `strategies`: `build_arm_tokenizer` (baseline / extend / replace);
- `extend`: continued BPE, new merges learned over the base tokenizer's own segmentation;
- `metrics`: fertility, bytes per token, context capacity (the table; the cards draw it);
- `load`: `load_tokenizer` for names, directories and hub ids;
- `chat_records`: chat records as tokens (assistant mask, fitting to `max_length`), for SFT and eval;
- `stage`: `run_tokenizer_stage`, the flow's `train_tokenizer` step;
- `cli`: `azllm tokenizer train|extend|eval`.

Submodules are imported on use (transformers is slow to import).
"""
