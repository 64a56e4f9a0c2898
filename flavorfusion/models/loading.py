"""Loading and saving summarizers: a Hub name, a local directory, a directory in object storage (gs://), or a W&B
artifact."""

import hashlib
import logging
import os
import tempfile

from tokenizers import AddedToken
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, PreTrainedModel
from transformers.utils import logging as transformers_logging

from flavorfusion.config.model import ModelSource
from flavorfusion.data.encoding import DOC_SEP
from flavorfusion.errors import ConfigError
from flavorfusion.io import atomic_output
from flavorfusion.models.quantized import is_quantized_export, load_quantized, refuse_for_training

log = logging.getLogger(__name__)

CONFIG_FILE = "flavorfusion.yaml"  # the composed run config, saved beside the weights
transformers_logging.disable_progress_bar()  # one bar per weight file or tensor group: the stages log loads and saves


def download_wandb_artifact(reference: str, root: str | None = None) -> str:
    """Download a W&B model artifact (`entity/project/name:alias`) and return its directory.

    Credentials come from the environment (WANDB_API_KEY) or `wandb login`, never from arguments.
    """
    import wandb

    root = root or os.path.join(tempfile.gettempdir(), "flavorfusion-artifacts", reference.replace("/", "_"))
    artifact = wandb.run.use_artifact(reference) if wandb.run else wandb.Api().artifact(reference, type="model")
    return artifact.download(root=root)


def download_directory(url: str, key: str = "model.name_or_path", root: str | None = None) -> str:
    """Copy an export directory from object storage (`gs://...`, through fsspec) and return the local copy.
    Credentials come from the environment (on Dataflow and Vertex AI, the service account)."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    try:
        if not fs.isdir(path):
            raise ConfigError(f"{key}={url} is not a directory")
        # the copy is reused (encoding and the model handler of one worker both load the source) while the
        # objects' names, sizes and checksums are the same: an export uploaded again to the same path is copied again
        listing = sorted((name, info.get("size"), info.get("md5Hash") or info.get("etag") or info.get("created"))
                         for name, info in fs.find(path, detail=True).items())
        version = hashlib.sha256(repr(listing).encode()).hexdigest()[:16]
        root = root or os.path.join(tempfile.gettempdir(), "flavorfusion-models",
                                    f"{url.replace('://', '_').replace('/', '_')}-{version}")
        if not os.path.isdir(root):
            with atomic_output(root) as tmp:
                fs.get(path.rstrip("/") + "/", tmp, recursive=True)
    except (OSError, ValueError) as err:
        raise ConfigError(f"{key}={url}: cannot read it ({err})") from None
    return root


def add_doc_sep(tokenizer, model: PreTrainedModel | None = None) -> None:
    """PRIMERA's tokenizer has `<doc-sep>`; other LED tokenizers get it as a special token."""
    if DOC_SEP in tokenizer.get_vocab():
        return
    tokenizer.add_tokens([AddedToken(DOC_SEP, special=True, lstrip=False, rstrip=False)], special_tokens=True)
    if model is not None:
        model.resize_token_embeddings(len(tokenizer))
    log.info("added %s to the tokenizer (id %d)", DOC_SEP, tokenizer.convert_tokens_to_ids(DOC_SEP))


def load_pretrained(name_or_path: str | None, key: str = "model.name_or_path", for_training: bool = False):
    """(model, tokenizer) from a model source (`flavorfusion.config.ModelSource`): a local export (quantized or
    not), a Hub name, or a W&B artifact (`wandb:entity/project/name:alias`). Errors name `key`, the config key the
    source came from. A quantized export is refused `for_training`, before its weights load."""
    source, location = model_location(name_or_path, key)
    if source.kind != "hub":
        if not any(f.endswith((".safetensors", ".bin")) or f == "model.safetensors.index.json"
                   for f in os.listdir(location)):
            raise ConfigError(f"{key}={name_or_path} holds no model weights")
        if for_training:
            refuse_for_training(location, key, shown=str(source))
        elif is_quantized_export(location):
            # transformers would skip the unknown quantization and fill those layers with random weights
            return load_quantized(location)
    tokenizer = AutoTokenizer.from_pretrained(location)
    model = AutoModelForSeq2SeqLM.from_pretrained(location)
    add_doc_sep(tokenizer, model)
    return model, tokenizer


def model_location(name_or_path: str | None, key: str = "model.name_or_path") -> tuple[ModelSource, str]:
    """(the parsed source, where `from_pretrained` reads it): artifacts and object-storage directories are
    downloaded first."""
    source = ModelSource.parse(name_or_path, key)
    if source.kind == "wandb":
        return source, download_wandb_artifact(source.location)
    if source.kind == "remote":
        return source, download_directory(source.location, key)
    if source.kind == "local" and not os.path.isdir(source.location):
        raise ConfigError(f"{key}={name_or_path} is not a directory")
    return source, source.location


def load_tokenizer(name_or_path: str | None, key: str = "model.name_or_path"):
    """(tokenizer, model config) of a model source, without its weights: what encoding needs."""
    from transformers import AutoConfig

    _, location = model_location(name_or_path, key)
    try:
        tokenizer, config = AutoTokenizer.from_pretrained(location), AutoConfig.from_pretrained(location)
    except OSError as err:
        raise ConfigError(f"{key}={name_or_path}: {str(err).splitlines()[0]}") from None
    add_doc_sep(tokenizer)
    return tokenizer, config


def is_demo_export(directory: str) -> bool:
    """An export of the quickstart's demo model (its composed config, `flavorfusion.yaml`, says
    `task_name: quickstart` or a tiny model built from config): it writes templates, not real summaries."""
    import yaml

    path = os.path.join(directory, CONFIG_FILE)
    if not os.path.isfile(path):
        return False
    try:
        with open(path, encoding="utf-8") as f:
            config = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError):
        return False
    target = str((config.get("model") or {}).get("_target_", ""))
    return config.get("task_name") == "quickstart" or target.endswith("from_tiny_config")


def attention_window(config) -> int:
    """The largest local attention window of an LED config (`attention_window` is one int or one per layer):
    what inputs are padded to a multiple of."""
    window = config.attention_window
    return max(window) if isinstance(window, list | tuple) else window


def source_limit(config) -> int:
    """The most source tokens a model takes: its encoder positions, rounded down to a multiple of its attention
    window (LED pads every input to that multiple, padding included in the positions)."""
    positions = getattr(config, "max_encoder_position_embeddings", None) or config.max_position_embeddings
    window = attention_window(config) if hasattr(config, "attention_window") else 0
    return positions - positions % window if window else positions


def target_limit(config) -> int:
    """The most target tokens a model takes: its decoder positions."""
    return getattr(config, "max_decoder_position_embeddings", None) or config.max_position_embeddings


def save_pretrained(model: PreTrainedModel, tokenizer, directory: str, config_yaml: str | None = None) -> str:
    """Write a Hugging Face directory (safetensors + tokenizer + composed config), atomically."""
    with atomic_output(directory) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if config_yaml is not None:
            with open(os.path.join(tmp, CONFIG_FILE), "w") as f:
                f.write(config_yaml)
    return directory
