"""GGUF for llama.cpp and Ollama: an exported directory converted by llama.cpp's own converter.

    from azllm.export.gguf import write_gguf
    write_gguf(export_dir, "q8_0", dtype="bfloat16")   # export_dir/model-q8_0.gguf + export_dir/Modelfile

    python -m azllm.export.gguf install-converter              # copy llama.cpp's converter out of the installed
                                                        # llama-cpp-python's source release (the Makefile does)

Why not just run `convert_hf_to_gguf.py DIR`: llama.cpp names a BPE pre-tokenizer (`tokenizer.ggml.pre`)
by hashing the ids a tokenizer gives one fixed test string and looking the hash up in a table of
published models. azllm's `extend` and `replace` arms have new vocabularies, so the hash is unknown and
the converter stops ("BPE pre-tokenizer was not recognized"). Every azllm tokenizer built on Llama 3
keeps Llama 3's pre-tokenizer (the regex split + byte-level, no normalizer, whole-pre-token shortcut),
which llama.cpp calls `llama-bpe`. So `write_gguf` first checks that tokenizer.json's pre-tokenizer,
normalizer and BPE settings are exactly Llama 3's, and only then runs the converter with its
`get_vocab_base_pre` answering `llama-bpe` (patched in the converter's process at import time; no
llama.cpp file is edited). Any other tokenizer goes through the converter's own hash lookup, and an
unknown one is refused with the pre-tokenizer named.

Types: `bf16`, `f16`, `f32`, `q8_0` come from the converter directly; `q4_k_m` from llama.cpp's
quantizer (`llama_model_quantize` in llama-cpp-python) on a converted file of the export's dtype (the
one in the directory, if it has one).
Files are written under a temporary name and renamed, so a failed conversion leaves no GGUF behind.
`tests/test_gguf.py` proves the files against llama.cpp itself (tokenization and greedy generation).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

GGUF_ENV = "AZLLM_GGUF_CONVERTER"
GGUF_SCRIPT = "convert_hf_to_gguf.py"
LLAMA_CPP_PACKAGE = "llama-cpp-python"
LLAMA_CPP_PIN = "0.3.36"
"""The llama-cpp-python release requirements-test.txt pins (its sdist vendors llama.cpp)."""

GGUF_OUTTYPE = {"bfloat16": "bf16", "float16": "f16", "float32": "f32"}
"""The converter's `--outtype` for an export dtype (the default `--gguf-type`)."""
CONVERTER_TYPES = ("bf16", "f16", "f32", "q8_0")
QUANTIZER_TYPES = {"q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M"}
"""Types made by llama.cpp's quantizer (from a converted file in the export's dtype)."""
GGUF_TYPES = (*CONVERTER_TYPES, *QUANTIZER_TYPES)

LLAMA3_PRE = "llama-bpe"
"""llama.cpp's name for Llama 3's pre-tokenizer (LLAMA_VOCAB_PRE_TYPE_LLAMA3, ignore_merges on)."""

MODELFILE_STOPS = ("<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>", "<|end_of_text|>")

GGUF_HOWTO = (f"llama.cpp's converter ({GGUF_SCRIPT}) is not installed. Get it with\n"
              f"  pip install {LLAMA_CPP_PACKAGE}=={LLAMA_CPP_PIN} && python -m azllm.export.gguf install-converter\n"
              "(builds llama.cpp once, minutes; then copies the converter out of its source release), or\n"
              "  git clone https://github.com/ggml-org/llama.cpp\n"
              "  pip install -r llama.cpp/requirements/requirements-convert_hf_to_gguf.txt\n"
              f"then put llama.cpp on PATH or set {GGUF_ENV}=$PWD/llama.cpp/{GGUF_SCRIPT}, and run the export "
              "again with --gguf (or convert the exported directory yourself: "
              f"python {GGUF_SCRIPT} DIR --outfile DIR/model.gguf)")

QUANTIZER_HOWTO = (f"--gguf-type {{gguf_type}} needs llama.cpp's quantizer, which comes with {LLAMA_CPP_PACKAGE} "
                   "(not importable here: {why}). Install it with\n"
                   f"  pip install {LLAMA_CPP_PACKAGE}=={LLAMA_CPP_PIN}   # builds llama.cpp, minutes\n"
                   "and export again; or export --gguf-type bf16 and run llama.cpp's own tool: "
                   "llama-quantize DIR/model-bf16.gguf DIR/model-{gguf_type}.gguf {upper}. Nothing was written.")


# ---------------------------------------------------------------------------
# Finding the converter
# ---------------------------------------------------------------------------


def converter_cache_dir(version: str | None = None) -> Path:
    """Where `install-converter` puts the converter of llama-cpp-python `version` (default: the installed
    one): `$XDG_CACHE_HOME/azllm-llama.cpp/<version>` (`~/.cache/...`), outside any clone."""
    if version is None:
        from importlib.metadata import version as dist_version

        version = dist_version(LLAMA_CPP_PACKAGE)
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "azllm-llama.cpp" / version


def bundled_converter() -> Path | None:
    """The converter that ships with the installed llama-cpp-python: inside the package, or (its wheel
    carries only the library) copied by `install-converter` from its source release into the cache."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution(LLAMA_CPP_PACKAGE)
    except PackageNotFoundError:
        return None
    for f in dist.files or ():
        if f.name == GGUF_SCRIPT:
            return Path(dist.locate_file(f))
    cached = converter_cache_dir(dist.version) / GGUF_SCRIPT
    return cached if cached.is_file() else None


def find_gguf_converter() -> Path | None:
    """`$AZLLM_GGUF_CONVERTER` (the script, or a llama.cpp checkout), else the script on PATH, else the copy
    that comes with llama-cpp-python."""
    configured = os.environ.get(GGUF_ENV)
    if configured:
        path = Path(configured).expanduser()
        path = path / GGUF_SCRIPT if path.is_dir() else path
        if not path.is_file():
            raise ValueError(f"{GGUF_ENV}={configured}: no {GGUF_SCRIPT} there; point it at the script or at a "
                             "llama.cpp checkout")
        return path
    found = shutil.which(GGUF_SCRIPT)
    return Path(found) if found else bundled_converter()


def require_gguf_converter() -> Path:
    converter = find_gguf_converter()
    if converter is None:
        raise ValueError(GGUF_HOWTO)
    return converter


def install_converter() -> Path:
    """Copy `convert_hf_to_gguf.py`, its `conversion` package and its `gguf-py` out of the installed
    llama-cpp-python's source release (pip download; the wheel has only the compiled library) into
    `converter_cache_dir()`. The converter puts its own `gguf-py` first on sys.path: it needs that copy
    (PyPI's gguf 0.19.0, of the same version number, lacks e.g. `gguf.LazyChunkedTensor`)."""
    from importlib.metadata import version as dist_version

    version = dist_version(LLAMA_CPP_PACKAGE)
    target = converter_cache_dir(version)
    if (target / GGUF_SCRIPT).is_file():
        return target / GGUF_SCRIPT
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                        "-d", tmp, f"{LLAMA_CPP_PACKAGE}=={version}"], check=True)
        staged = extract_converter(next(Path(tmp).glob("*.tar.gz")), Path(tmp) / "staged")
        try:
            os.rename(staged, target)
        except OSError:  # another process installed it first
            pass
    print(f"[gguf] {GGUF_SCRIPT} of {LLAMA_CPP_PACKAGE} {version} in {target}", flush=True)
    return target / GGUF_SCRIPT


def extract_converter(sdist: Path, out: Path) -> Path:
    """The converter's files from llama-cpp-python's sdist (`vendor/llama.cpp/`) into `out`."""
    prefix = f"{sdist.name.removesuffix('.tar.gz')}/vendor/llama.cpp/"
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.startswith(prefix) and (
            m.name == prefix + GGUF_SCRIPT or m.name.startswith((prefix + "conversion/", prefix + "gguf-py/")))]
        if not any(m.name == prefix + GGUF_SCRIPT for m in members):
            raise ValueError(f"{sdist.name} holds no vendor/llama.cpp/{GGUF_SCRIPT}; set {GGUF_ENV} instead")
        for m in members:
            m.name = m.name[len(prefix):]
        tar.extractall(out, members=members, filter="data")
    return out


def quantizer_error(gguf_type: str) -> str | None:
    """Why `gguf_type` cannot be made here (None when it can): the converter types always can; q4_k_m
    needs `llama_cpp.llama_model_quantize`."""
    if gguf_type not in GGUF_TYPES:
        return f"--gguf-type {gguf_type!r}: expected one of {GGUF_TYPES}"
    if gguf_type not in QUANTIZER_TYPES:
        return None
    try:
        import llama_cpp

        llama_cpp.llama_model_quantize  # noqa: B018 - the symbol this needs
    except (ImportError, AttributeError, OSError) as e:
        return QUANTIZER_HOWTO.format(gguf_type=gguf_type, upper=gguf_type.upper(), why=f"{type(e).__name__}: {e}")
    return None


# ---------------------------------------------------------------------------
# The pre-tokenizer check
# ---------------------------------------------------------------------------


def llama3_tokenizer_settings() -> dict:
    """tokenizer.json's normalizer, pre_tokenizer and BPE flags as azllm's Llama 3 tokenizers write them."""
    from tokenizers import Tokenizer
    from tokenizers.models import BPE

    from azllm.tokenizer.llama3 import llama3_pre_tokenizer

    tok = Tokenizer(BPE(ignore_merges=True))
    tok.pre_tokenizer = llama3_pre_tokenizer()
    return _settings(json.loads(tok.to_str()))


def _settings(tokenizer_json: dict) -> dict:
    model = tokenizer_json.get("model") or {}
    return {"normalizer": tokenizer_json.get("normalizer"), "pre_tokenizer": tokenizer_json.get("pre_tokenizer"),
            "model.type": model.get("type"), "model.ignore_merges": model.get("ignore_merges", False),
            "model.byte_fallback": model.get("byte_fallback", False)}


def _describe(value) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 300 else text[:300] + "..."


def llama_cpp_pre_tokenizer(model_dir: Path) -> tuple[str | None, list[str]]:
    """(`llama-bpe` when `model_dir/tokenizer.json` is exactly Llama 3's pre-tokenization, else None;
    the differences found, each naming the field and its value)."""
    path = Path(model_dir) / "tokenizer.json"
    if not path.is_file():
        return None, [f"{path} is missing (a SentencePiece or other non-BPE tokenizer)"]
    found = _settings(json.loads(path.read_text(encoding="utf-8")))
    expected = llama3_tokenizer_settings()
    diffs = [f"{key} is {_describe(found[key])}, Llama 3's is {_describe(expected[key])}"
             for key in expected if found[key] != expected[key]]
    return (None if diffs else LLAMA3_PRE), diffs


# ---------------------------------------------------------------------------
# Running the converter
# ---------------------------------------------------------------------------

GENERATION_TAGS = r"\{%-?\s*(?:end)?generation\s*-?%\}"
"""transformers' `{% generation %}` markers (azllm's chat template has them for assistant-only loss);
other Jinja engines (llama-cpp-python's, llama.cpp's) do not know the tag, so the GGUF's copy drops them.
Every neighbouring tag trims whitespace, so the rendered text is the same."""

LAUNCHER = r"""
import importlib.util, os, re, sys
script, pre, tags = sys.argv[1], sys.argv[2], sys.argv[3]
sys.argv = [script, *sys.argv[4:]]
sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
spec = importlib.util.spec_from_file_location("convert_hf_to_gguf", script)
module = importlib.util.module_from_spec(spec)
sys.modules["convert_hf_to_gguf"] = module
spec.loader.exec_module(module)
import gguf
add_chat_template = gguf.GGUFWriter.add_chat_template
def without_generation_tags(self, value):
    return add_chat_template(self, re.sub(tags, "", value) if isinstance(value, str) else value)
gguf.GGUFWriter.add_chat_template = without_generation_tags
if pre:
    patched = []
    for name, mod in list(sys.modules.items()):
        if name == "convert_hf_to_gguf" or name == "conversion" or name.startswith("conversion."):
            for cls in vars(mod).values():
                if isinstance(cls, type) and "get_vocab_base_pre" in vars(cls):
                    cls.get_vocab_base_pre = lambda self, tokenizer: pre
                    patched.append(cls.__name__)
    if not patched:
        sys.exit(f"azllm: {script} has no get_vocab_base_pre to tell the pre-tokenizer to; use llama.cpp's "
                 "converter from 2024-05 or later")
    print(f"azllm: tokenizer.ggml.pre = {pre!r} (checked: Llama 3's pre-tokenizer)", flush=True)
module.main()
"""
"""Runs the converter's `main()` in its own process, after telling it the pre-tokenizer (checked by the
caller) and stripping the generation tags from the chat template it copies. Works for the single-file
converter and for the newer one split into a `conversion` package."""


def run_converter(converter: Path, model_dir: Path, outfile: Path, outtype: str, pre: str | None,
                  name: str | None = None) -> None:
    """llama.cpp's converter on `model_dir` -> `outfile` (written by the converter; the caller renames)."""
    cmd = [sys.executable, "-c", LAUNCHER, str(converter), pre or "", GENERATION_TAGS, str(model_dir),
           "--outfile", str(outfile), "--outtype", outtype, "--model-name", name or model_dir.name]
    print(f"[export] {GGUF_SCRIPT} {model_dir} --outfile {outfile.name} --outtype {outtype}"
          f"{f' (pre-tokenizer {pre})' if pre else ''}", flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode == 0:
        return
    output = proc.stdout + proc.stderr
    if "pre-tokenizer was not recognized" in output:
        raise ValueError(f"--gguf: llama.cpp's converter does not know this tokenizer's pre-tokenizer, and it is "
                         f"not Llama 3's ({'; '.join(_pre_diffs(model_dir))}). llama.cpp picks a pre-tokenizer by "
                         "name and azllm vouches only for Llama 3's ('llama-bpe'): export the safetensors "
                         "directory without --gguf, or train with a Llama 3 tokenizer (model.tokenizer = "
                         "\"llama-3.2\" or a Llama 3 base model); a base model llama.cpp knows converts as its "
                         "`baseline` arm.")
    raise RuntimeError(f"llama.cpp's converter failed (exit {proc.returncode}): {' '.join(cmd[3:])}\n"
                       f"{output[-4000:]}")


def _pre_diffs(model_dir: Path) -> list[str]:
    return llama_cpp_pre_tokenizer(model_dir)[1]


def quantize(src: Path, dst: Path, gguf_type: str) -> None:
    """llama.cpp's quantizer (as `llama-quantize SRC DST TYPE`) through llama-cpp-python's binding."""
    import ctypes

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, QUANTIZER_TYPES[gguf_type])
    print(f"[export] llama_model_quantize {src.name} -> {dst.name} ({gguf_type})", flush=True)
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0:
        raise RuntimeError(f"llama.cpp's quantizer failed on {src} (code {rc})")


def gguf_name(gguf_type: str) -> str:
    return f"model-{gguf_type}.gguf"


def write_gguf(model_dir: Path, gguf_type: str, *, dtype: str, converter: Path | None = None,
               name: str | None = None) -> Path:
    """`model_dir/model-<gguf_type>.gguf` (and an Ollama `Modelfile` beside it) from the saved directory;
    `name`: the GGUF's general.name (default: the directory's name)."""
    model_dir = Path(model_dir)
    problem = quantizer_error(gguf_type)
    if problem:
        raise ValueError(problem)
    converter = converter or require_gguf_converter()
    pre, _ = llama_cpp_pre_tokenizer(model_dir)
    target = model_dir / gguf_name(gguf_type)
    with tempfile.TemporaryDirectory(prefix=".gguf-", dir=model_dir.parent) as tmp:
        if gguf_type in QUANTIZER_TYPES:
            source = model_dir / gguf_name(GGUF_OUTTYPE[dtype])  # already converted: quantize that
            if not source.is_file():
                source = Path(tmp) / source.name
                run_converter(converter, model_dir, source, GGUF_OUTTYPE[dtype], pre, name)
            quantize(source, Path(tmp) / target.name, gguf_type)
        else:
            run_converter(converter, model_dir, Path(tmp) / target.name, gguf_type, pre, name)
        os.replace(Path(tmp) / target.name, target)
    write_modelfile(model_dir, target.name)
    return target


# ---------------------------------------------------------------------------
# Ollama
# ---------------------------------------------------------------------------

OLLAMA_TEMPLATE = (
    "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>\n"
    "{{- end }}<|start_header_id|>assistant<|end_header_id|>\n\n"
)
"""`azllm.tokenizer.llama3.LLAMA3_CHAT_TEMPLATE` in Ollama's Go template language. `<|begin_of_text|>` is
not in it: llama.cpp adds it (the GGUF says add_bos_token), as for Meta's Llama 3 models in Ollama.
`.Messages` holds every message, a system prompt (SYSTEM or the API's) included (Ollama's template.go
`collate` keeps system messages in the list as well as joining them into `.System`), so there is no
`.System` block. `{{-` trims the newline before it, as `{%-` does in the Jinja original."""


def modelfile_text(gguf_file: str) -> str:
    """An Ollama Modelfile (https://github.com/ollama/ollama/blob/main/docs/modelfile.md) for `gguf_file`."""
    stops = "".join(f'PARAMETER stop "{s}"\n' for s in MODELFILE_STOPS)
    return ("# Ollama: ollama create azllm-az -f Modelfile && ollama run azllm-az\n"
            f"FROM ./{gguf_file}\n"
            f'TEMPLATE """{OLLAMA_TEMPLATE}"""\n'
            f"{stops}"
            "# greedy, as generation_config.json\n"
            "PARAMETER temperature 0\n")


def write_modelfile(model_dir: Path, gguf_file: str) -> Path:
    path = Path(model_dir) / "Modelfile"
    path.write_text(modelfile_text(gguf_file), encoding="utf-8")
    return path


def _main(argv: list[str]) -> int:
    if argv != ["install-converter"]:
        print("usage: python -m azllm.export.gguf install-converter", file=sys.stderr)
        return 2
    install_converter()
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
