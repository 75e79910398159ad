"""`load(source, space=...)`: an `EmbeddingSpace` from a model, a checkpoint or a run.

A source is ``"default"``, ``"default-causal"``, a model folder or hub id, a checkpoint folder (full or LoRA), a run
folder, or a run (a `ftkit.runs.Run` or its id/name). A run stands for the checkpoint its
predictions use (`ftkit.runstore.layout.choose_checkpoint`: the ``best`` folder, else the best-scoring or
last checkpoint), read from the run's own store, and its training data is the default corpus for
contextual vectors. Spaces built
from files are cached in memory, so the widget and magics can ask again without re-reading a model
or re-encoding a corpus.
"""

from __future__ import annotations

import os
import re
from collections import Counter, OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import FtkitError, RunError
from ..runstore.layout import RUN_FILE
from ..engine.causal import DEFAULT_CAUSAL_MODEL, default_causal_model_dir, is_causal_default
from ..engine.models import DEFAULT_MODEL, load_tokenizer, quiet_loading, resolve_model_source
from .contextual import Corpus, entity_type, pool_word_vectors, read_corpus
from .space import SPACES, EmbeddingSpace
from .vocabulary import byte_level_words, is_byte_level

_RESERVED_TOKEN = re.compile(r"^(\[unused\d+\]|<unused\d+>)$")
_CACHE: OrderedDict[tuple, EmbeddingSpace] = OrderedDict()
_CACHE_SIZE = 6
PROGRESS_BAR_SENTENCES = 1000  # contextual passes over this many sentences show a progress bar by default


@dataclass
class ModelRef:
    """What a source names: where the weights are, what to call them, and the run behind them."""

    path: str
    label: str
    run: Any = None

    @property
    def base(self) -> str | None:
        """The model the run started from (``"default"``, a folder or a hub id)."""
        return self.run.config.model if self.run is not None else None


def load(
    source: Any = DEFAULT_MODEL,
    space: str = "static",
    corpus: Any = None,
    max_words: int | None = None,
    *,
    max_sentences: int | None = None,
    subwords: bool = False,
    layer: int = -1,
    batch_size: int = 32,
    device: str | None = None,
    cache: bool = True,
    progress: "bool | Callable[[int, int], None] | None" = None,
) -> EmbeddingSpace:
    """Static input embeddings or contextual word vectors of ``source`` as an `EmbeddingSpace`.

    static: one vector per vocabulary entry, without special and ``[unused]`` tokens, and without
    ``##`` continuation pieces unless ``subwords=True`` (byte-level BPE: words as text, ``Ġparis`` as
    ``paris``, pieces inside words only with ``subwords=True``); a ``corpus`` adds frequencies and tags.
    contextual: hidden states of ``layer`` averaged per word over ``corpus`` (a data file, a
    ``datasets`` split or a list of sentences; default: the run's training data), the first
    ``max_sentences`` of it. ``max_words`` keeps the most frequent words.

    ``progress`` (contextual): a callable ``(sentences_done, total)`` called after every batch (a
    widget shows it), True for a tqdm bar, False for silence; by default a bar for corpora of
    `PROGRESS_BAR_SENTENCES` or more (a pass of more than a few seconds).
    """
    if space not in SPACES:
        raise FtkitError(f"space must be one of {', '.join(SPACES)}, not {space!r}")
    ref = resolve_source(source)
    if space == "contextual" and corpus is None:
        if ref.run is None:
            raise FtkitError("contextual vectors need a corpus: pass corpus= a data file or a list of sentences "
                             "(a run uses its training data)")
        corpus = ref.run
    key = _cache_key(ref, space, corpus, max_words, max_sentences, subwords, layer, device) if cache else None
    if key is not None and key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    model, tokenizer = load_model(ref, device)
    lowercase = tokenizer.tokenize("A") == tokenizer.tokenize("a")
    name = f"{ref.label} ({space})"
    read = None if corpus is None else read_corpus(_run_data(corpus) if _is_run(corpus) else corpus, max_sentences)
    if space == "static":
        result = static_space(model, tokenizer, name, lowercase=lowercase, subwords=subwords, corpus=read)
    else:
        on_progress, close = _progress_callback(progress, len(read), f"contextual vectors of {ref.label}")
        try:
            pooled = pool_word_vectors(model, tokenizer, read, lowercase=lowercase, layer=layer, batch_size=batch_size,
                                       max_length=min(256, tokenizer.model_max_length), on_progress=on_progress)
        finally:
            close()
        result = EmbeddingSpace(pooled.words, pooled.vectors, kind="contextual", name=name,
                                frequencies=pooled.frequencies, tags=pooled.tags, lowercase=lowercase)
    result = result.top(max_words)
    if key is not None:
        _CACHE[key] = result
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return result


def _progress_callback(progress: Any, total: int, description: str) -> tuple[Any, Callable[[], None]]:
    """``(on_progress, close)`` for `pool_word_vectors`: the caller's callable, a tqdm bar, or nothing."""
    if callable(progress):
        return progress, lambda: None
    if progress is False or (progress is None and total < PROGRESS_BAR_SENTENCES):
        return None, lambda: None
    from tqdm.auto import tqdm

    bar = tqdm(total=total, unit="sentence", desc=description, mininterval=0.5)

    def advance(done: int, _total: int) -> None:
        bar.update(done - bar.n)

    return advance, bar.close


def load_pair(run: Any, space: str = "static", corpus: Any = None,
              **options: Any) -> tuple[EmbeddingSpace, EmbeddingSpace]:
    """The run's base model and its checkpoint as two spaces over the same corpus: before and after."""
    after_ref = resolve_source(run)
    if after_ref.run is None:
        raise FtkitError(f"{run!r} is not a run: pass a run id or name (see ftkit.runs.list()) "
                         "to compare it with its base model")
    if space == "contextual" and corpus is None:
        corpus = after_ref.run
    return load(after_ref.base, space, corpus, **options), load(run, space, corpus, **options)


# ----- sources -----------------------------------------------------------------------------------


def resolve_source(source: Any) -> ModelRef:
    """Which weights ``source`` names; raises a FtkitError that says what was expected."""
    if _is_run(source):
        from ..engine.inference import checkpoint_path

        checkpoint = checkpoint_path(source)
        return ModelRef(str(checkpoint), f"{source.name} ({checkpoint.name})", source)
    if not isinstance(source, (str, os.PathLike)) or not str(source).strip():
        raise FtkitError(f"a model source is 'default', a model or checkpoint folder, a hub id or a run; "
                         f"got {source!r}")
    if str(source) == DEFAULT_MODEL:
        return ModelRef(resolve_model_source(DEFAULT_MODEL), DEFAULT_MODEL)
    if is_causal_default(source):
        return ModelRef(str(default_causal_model_dir()), DEFAULT_CAUSAL_MODEL)
    path = Path(source).expanduser()
    if (path / RUN_FILE).is_file():
        return resolve_source(_run_at(path))
    if path.is_dir() and (path.parent / RUN_FILE).is_file():  # a checkpoint inside a run folder
        run = _run_at(path.parent)
        return ModelRef(str(path.resolve()), f"{run.name} ({path.name})", run)
    if (path / "adapter_config.json").is_file():
        return ModelRef(str(path.resolve()), path.name)
    if not path.exists():
        run = _find_run(str(source))
        if run is not None:
            return resolve_source(run)
    return ModelRef(resolve_model_source(source), path.name if path.exists() else str(source))


def _is_run(source: Any) -> bool:
    return all(hasattr(source, name) for name in ("checkpoints", "config", "dir", "id"))


def _run_at(folder: Path) -> Any:
    from ..runs import Run
    from ..runstore import RunStore

    return Run(folder.name, RunStore(folder.parent))


def _find_run(ref: str) -> Any:
    """A run by id or name in the default store or one this process opened runs in (looking never
    creates a store)."""
    from ..runs import get

    try:
        return get(ref)
    except RunError:
        return None


def _run_data(run: Any) -> Any:
    """A run's training data, read with the same data options the run was trained with."""
    from ..tasks.loading import load

    config = run.config
    if not config.data.train:
        raise FtkitError(f"run {run.id} names no training data to build contextual vectors from; pass corpus=")
    options = {name: getattr(config.data, name) for name in
               ("tag_column", "tag_scheme", "text_column", "label_column", "tokens_column", "tags_column")}
    return load(config.data.train, task=config.task, format=config.data.format,
                **{name: value for name, value in options.items() if value is not None})


def _cache_key(ref: ModelRef, space: str, corpus: Any, *options: Any) -> tuple | None:
    """A key for spaces built from files only; in-memory corpora may change, so they are not cached."""
    if corpus is None:
        corpus_key = None
    elif _is_run(corpus):
        corpus_key = ("run", str(corpus.dir))
    elif isinstance(corpus, (str, os.PathLike)) and Path(corpus).exists():
        corpus_key = (str(Path(corpus).resolve()), Path(corpus).stat().st_mtime)
    else:
        return None
    weights = Path(ref.path)
    stamp = max((f.stat().st_mtime for f in weights.iterdir()), default=0) if weights.is_dir() else None
    return (ref.path, stamp, space, corpus_key) + options


# ----- models ------------------------------------------------------------------------------------


def load_model(ref: ModelRef, device: str | None = None) -> tuple[Any, Any]:
    """The model (any transformers model with input embeddings and hidden states) and its fast tokenizer.

    Checkpoints of runs and LoRA folders load through `ftkit.adapters.load_for_inference`; plain
    encoders load as ``AutoModel`` (a task checkpoint loads its encoder that way too).
    """
    folder = Path(ref.path)
    from ..engine.generation import is_causal_lm_folder

    if (ref.run is not None or (folder / "adapter_config.json").is_file()) and is_causal_lm_folder(folder):
        from ..engine.generation import load_causal_lm

        model, tokenizer = load_causal_lm(folder)  # an sft checkpoint: full, or LoRA on its base
        tokenizer = load_tokenizer(tokenizer.name_or_path)  # fast, and takes pre-split words
    elif ref.run is not None or (folder / "adapter_config.json").is_file():
        from ..engine.adapters import load_for_inference

        model, tokenizer = load_for_inference(folder)
    else:
        from transformers import AutoModel

        with quiet_loading():
            try:
                model = AutoModel.from_pretrained(ref.path)
            except (OSError, ValueError) as exc:
                raise FtkitError(f"could not load the model '{ref.path}': {str(exc).splitlines()[0][:300]}") from None
        tokenizer = load_tokenizer(ref.path)
    model.to(device or ("cuda" if torch.cuda.is_available() else "cpu")).eval()
    return model, tokenizer


def static_space(model: Any, tokenizer: Any, name: str, *, lowercase: bool = False, subwords: bool = False,
                 corpus: Corpus | None = None) -> EmbeddingSpace:
    """The input embedding matrix as a space of the vocabulary's words.

    Special and reserved (``[unused…]``) tokens are left out, as are ``##`` pieces unless
    ``subwords``; a word outside the vocabulary gets the mean of its wordpieces' rows.
    """
    table = model.get_input_embeddings().weight.detach()
    special = set(tokenizer.all_special_tokens)
    vocabulary = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    byte_level = is_byte_level(tokenizer)
    if byte_level:  # "Ġparis" -> "paris"; pieces and non-words left out (see .vocabulary)
        kept = byte_level_words([(t, i) for t, i in vocabulary if i < table.shape[0]], special, subwords)
    else:
        kept = [(token, i) for token, i in vocabulary if i < table.shape[0] and token not in special
                and not _RESERVED_TOKEN.match(token) and (subwords or not token.startswith("##"))]
    if not kept:
        raise FtkitError(f"the vocabulary of {name} holds only special tokens: its tokenizer did not load its words")
    words = [token for token, _ in kept]
    vectors = table[torch.tensor([i for _, i in kept], device=table.device)].clone()

    def subword_vector(word: str) -> torch.Tensor:
        # Byte-level BPE: the leading space makes these the pieces of the word in running text ("Ġxyl").
        pieces = tokenizer(" " + word if byte_level else word, add_special_tokens=False)["input_ids"]
        if not pieces or all(piece == tokenizer.unk_token_id for piece in pieces):
            raise FtkitError(f"'{word}' has no known pieces in the vocabulary of {name}")
        return table[torch.tensor(pieces, device=table.device)].mean(dim=0)

    frequencies = tags = None
    if corpus is not None:
        counts, majority = corpus_statistics(corpus, lowercase)
        frequencies = [counts.get(word, 0) for word in words]
        tags = None if majority is None else [majority.get(word, "") for word in words]
    return EmbeddingSpace(words, vectors, kind="static", name=name, frequencies=frequencies, tags=tags,
                          lowercase=lowercase, subword_vector=subword_vector)


def corpus_statistics(corpus: Corpus, lowercase: bool) -> tuple[Counter, dict[str, str] | None]:
    """How often each word occurs, and its most frequent entity type when the corpus is tagged."""
    key = str.lower if lowercase else str
    counts = Counter(key(w) for sentence in corpus.sentences for w in sentence)
    if corpus.tags is None:
        return counts, None
    types: dict[str, Counter] = {}
    for sentence, tags in zip(corpus.sentences, corpus.tags):
        for word, tag in zip(sentence, tags):
            types.setdefault(key(word), Counter())[entity_type(tag)] += 1
    return counts, {word: counter.most_common(1)[0][0] for word, counter in types.items()}
