"""A model directory any runtime loads: the adapter merged, the tokenizer with its chat template, a
generation config, a model card (`model_dir`), and llama.cpp's GGUF with an Ollama Modelfile (`gguf`)."""
