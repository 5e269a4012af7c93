"""Any Hugging Face dataset of documents, by hub name or as a local file or directory.

`hf:<name>[:<split>]` loads with `datasets`; a column map names which columns hold the id,
title, url and text (`--column-map id=doc_id,text=body`). Local inputs never touch the network:
a .parquet/.arrow/.csv/.json(l) file, a directory of such files, or a `save_to_disk` directory.
"""
from __future__ import annotations

from pathlib import Path

from citeenv.corpus import DEFAULT_CHUNK_CHARS, Corpus, CorpusError, documents_from_records, parse_column_map

# File suffix -> the `datasets` builder that reads it.
BUILDERS = {".parquet": "parquet", ".arrow": "arrow", ".csv": "csv", ".json": "json", ".jsonl": "json", ".txt": "text"}


def looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or _builder_for(Path(name)) is not None


def _builder_for(path: Path) -> str | None:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".bz2", ".zst", ".xz"):
        suffixes = suffixes[:-1]
    return BUILDERS.get(suffixes[-1]) if suffixes else None


def load_hf_dataset(name: str, split: str | None = None, config: str | None = None):
    """One split of a dataset as a `datasets.Dataset`. split=None takes "train", or the only split."""
    import datasets

    path = Path(name).expanduser()
    try:
        if path.is_file():
            builder = _builder_for(path)
            if builder is None:
                raise CorpusError(f"Don't know how to read {path}: use a .parquet, .arrow, .csv or .json(l) file.")
            loaded = datasets.load_dataset(builder, data_files={split or "train": str(path)})
        elif path.is_dir() and ((path / "state.json").is_file() or (path / "dataset_dict.json").is_file()):
            loaded = datasets.load_from_disk(str(path))
        elif path.is_dir():
            loaded = datasets.load_dataset(str(path))
        elif looks_like_path(name):
            raise CorpusError(f"No such file or directory: {path}")
        else:
            loaded = datasets.load_dataset(name, config) if config else datasets.load_dataset(name)
    except CorpusError:
        raise
    except Exception as e:  # datasets raises many types: not found, offline, bad config, bad file
        hint = ("" if path.exists() else " Loading by name needs a hub connection (or the dataset in the local "
                "Hugging Face cache); otherwise give a local file or directory.")
        raise CorpusError(f"Could not load the dataset {name!r}: {type(e).__name__}: {e}.{hint}") from None
    if isinstance(loaded, datasets.DatasetDict):
        splits = list(loaded)
        if split is None:
            split = "train" if "train" in splits else (splits[0] if len(splits) == 1 else None)
            if split is None:
                raise CorpusError(f"The dataset {name!r} has several splits ({', '.join(splits)}); "
                                  f"name one, e.g. hf:{name}:{splits[0]}.")
        if split not in loaded:
            raise CorpusError(f"The dataset {name!r} has no split {split!r}; its splits are: {', '.join(splits)}.")
        loaded = loaded[split]
    return loaded


def hf_corpus(name: str, split: str | None = None, column_map: dict | str | None = None, config: str | None = None,
              limit: int | None = None, chunk_chars: int = DEFAULT_CHUNK_CHARS, strict: bool = False) -> Corpus:
    dataset = load_hf_dataset(name, split=split, config=config)
    cmap = parse_column_map(column_map)
    missing = [f"{field}={column}" for field, column in cmap.items() if column not in dataset.column_names]
    if missing:
        raise CorpusError(f"The dataset {name!r} has no column(s) for {', '.join(missing)}; "
                          f"its columns are: {', '.join(dataset.column_names)}.")
    if "text" not in cmap and "text" not in dataset.column_names:
        raise CorpusError(f"The dataset {name!r} has no 'text' column; its columns are: "
                          f"{', '.join(dataset.column_names)}. Name the text column with --column-map text=COLUMN.")
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    corpus_name = Path(name).name.split(".")[0] if Path(name).exists() else name.replace("/", "-")
    docs = documents_from_records(enumerate(dataset), cmap, corpus_name, f"dataset {name!r}", "row", strict)
    return Corpus(docs, name=corpus_name, chunk_chars=chunk_chars)
