"""The prepared-data directory: what `azllm data prepare` (the flow's `join_data`) writes, in one place.

    train.jsonl                                  {"text": ...} per line: the CPT corpus
    validation.jsonl, [other_domain.jsonl]       {"text": ...} per line: what every model is scored on
    sft_train.jsonl, sft_validation.jsonl        {"messages": [...]} per line: the chat records

The writers (`azllm.data.corpus`, `azllm.data.sft`) take the names from here, and every later stage
takes a :class:`PreparedData` instead of loose paths:

    >>> data = PreparedData.at(Path("runs/data"))     # one directory, as `azllm data prepare` writes it
    >>> data.require("train", "validation")           # FileNotFoundError naming the file and its writer
    >>> data.train, data.eval_files                   # Path, {"validation": Path, "other_domain": Path}

The flow stores the directory as two references (`steps.artifacts.save_prepared_data`): `corpus`, train.jsonl
alone (~10 GB at scale; read only by `train_tokenizer` and `pack_arm`), and `data`, the small rest every
later step loads. ``PreparedData(data_dir=..., corpus_dir=...)`` says which of the two a step holds: a
step that loaded only `data` has ``corpus_dir=None``, and asking it for `train` is an error that says so,
not a path to a file that is not there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

TRAIN = "train.jsonl"
VALIDATION = "validation.jsonl"
OTHER_DOMAIN = "other_domain.jsonl"
SFT_TRAIN = "sft_train.jsonl"
SFT_VALIDATION = "sft_validation.jsonl"
CORPUS_FILES = (TRAIN,)
"""In the flow's `corpus` reference; every other file is in its `data` reference."""
FILES = {"train": TRAIN, "validation": VALIDATION, "other_domain": OTHER_DOMAIN, "sft_train": SFT_TRAIN,
         "sft_validation": SFT_VALIDATION}
"""Role -> file name."""
_WRITER = {"train": "the corpus (`azllm.data.corpus.join_corpus`)",
           "validation": "the corpus (`azllm.data.corpus.join_corpus`)",
           "other_domain": "the corpus (`azllm.data.corpus.join_corpus`) when `[data] other_domain` is set",
           "sft_train": "the chat records (`azllm.data.sft.prepare_sft`)",
           "sft_validation": "the chat records (`azllm.data.sft.prepare_sft`)"}


@dataclass(frozen=True)
class PreparedData:
    """A prepared-data directory, or the flow's two halves of one (module docstring)."""

    data_dir: Path | None = None
    """validation, other_domain, sft_train, sft_validation (the flow's `data` reference); None when the
    step loaded only the corpus (`pack_arm`)."""
    corpus_dir: Path | None = None
    """Where train.jsonl is (the flow's `corpus` reference); None when the step loaded only `data`."""

    def __post_init__(self) -> None:
        if self.data_dir is None and self.corpus_dir is None:
            raise ValueError("PreparedData needs data_dir, corpus_dir or both")
        for name in ("data_dir", "corpus_dir"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))

    @classmethod
    def at(cls, directory: Path) -> PreparedData:
        """One directory holding every file, as `azllm data prepare --out DIR` writes it."""
        return cls(data_dir=Path(directory), corpus_dir=Path(directory))

    def path(self, role: str) -> Path:
        """The file of `role` (a key of :data:`FILES`); ValueError when this half does not hold it."""
        if role not in FILES:
            raise ValueError(f"no prepared file {role!r}; the roles are {list(FILES)}")
        name = FILES[role]
        folder = self.corpus_dir if name in CORPUS_FILES else self.data_dir
        if folder is None:
            which, other = ("corpus", "data") if name in CORPUS_FILES else ("data", "corpus")
            raise ValueError(f"{name} is in the prepared data's `{which}` half, and this step holds only "
                             f"`{other}` ({self.corpus_dir or self.data_dir}); load the flow's `{which}` "
                             "reference too (@model(load=[...]))")
        return folder / name

    @property
    def train(self) -> Path:
        return self.path("train")

    @property
    def validation(self) -> Path:
        return self.path("validation")

    @property
    def other_domain(self) -> Path | None:
        """None when the preset has no `[data] other_domain` (the file is not written)."""
        path = self.path("other_domain")
        return path if path.exists() else None

    @property
    def sft_train(self) -> Path:
        return self.path("sft_train")

    @property
    def sft_validation(self) -> Path:
        return self.path("sft_validation")

    @property
    def eval_files(self) -> dict[str, Path]:
        """The text files every model is scored on: validation, and other-domain when written."""
        other = self.other_domain
        return {"validation": self.validation, **({"other_domain": other} if other else {})}

    def require(self, *roles: str) -> PreparedData:
        """Self, once each file of `roles` exists; else FileNotFoundError naming the missing files,
        what writes them, and the command that does."""
        missing = [(role, self.path(role)) for role in roles if not self.path(role).is_file()]
        if missing:
            where = self.data_dir or self.corpus_dir
            raise FileNotFoundError(
                "prepared data is missing " + "; ".join(f"{path} (written with {_WRITER[role]})"
                                                        for role, path in missing)
                + f": it was not written by `azllm data prepare` (the flow's join_data step); run "
                  f"`azllm data prepare --config PRESET --out {where}`")
        return self
