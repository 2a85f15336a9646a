"""azllm: adapt a foundation LLM to Azerbaijani (tokenizer, CPT, LoRA SFT, evaluation)."""

from pathlib import Path

from setuptools import find_packages, setup


def _requirements(name: str) -> list[str]:
    lines = Path(__file__).with_name(name).read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


setup(
    name="azllm",
    version="0.1.0",
    description="Adapt a Llama-architecture LLM to Azerbaijani: tokenizer, CPT, LoRA SFT, evaluation",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8")
    if Path(__file__).with_name("README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["azllm", "azllm.*"]),
    package_data={"azllm.eval": ["lm_tasks/*.yaml", "lm_tasks/*.py"]},  # azllm's lm-eval tasks (SIB-200, FLORES)
    install_requires=_requirements("requirements.txt"),
    extras_require={"test": _requirements("requirements-test.txt")},
    entry_points={"console_scripts": ["azllm=azllm.cli:main"]},
    license="Apache-2.0",
)
