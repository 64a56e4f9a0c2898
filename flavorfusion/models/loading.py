"""Loading and saving summarizers: a Hub name, a local directory, or a W&B artifact."""

import logging
import os
import tempfile

from tokenizers import AddedToken
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, PreTrainedModel

from flavorfusion.data.encoding import DOC_SEP
from flavorfusion.errors import ConfigError
from flavorfusion.io import atomic_output
from flavorfusion.models.quantized import is_quantized_export, load_quantized, refuse_for_training

log = logging.getLogger(__name__)

CONFIG_FILE = "flavorfusion.yaml"  # the composed run config, saved beside the weights


def download_wandb_artifact(reference: str, root: str | None = None) -> str:
    """Download a W&B model artifact (`entity/project/name:alias`) and return its directory.

    Credentials come from the environment (WANDB_API_KEY) or `wandb login`, never from arguments.
    """
    import wandb

    root = root or os.path.join(tempfile.gettempdir(), "flavorfusion-artifacts", reference.replace("/", "_"))
    artifact = wandb.run.use_artifact(reference) if wandb.run else wandb.Api().artifact(reference, type="model")
    return artifact.download(root=root)


def add_doc_sep(tokenizer, model: PreTrainedModel | None = None) -> None:
    """PRIMERA's tokenizer has `<doc-sep>`; other LED tokenizers get it as a special token."""
    if DOC_SEP in tokenizer.get_vocab():
        return
    tokenizer.add_tokens([AddedToken(DOC_SEP, special=True, lstrip=False, rstrip=False)], special_tokens=True)
    if model is not None:
        model.resize_token_embeddings(len(tokenizer))
    log.info("added %s to the tokenizer (id %d)", DOC_SEP, tokenizer.convert_tokens_to_ids(DOC_SEP))


def looks_local(path: str) -> bool:
    """A path rather than a Hub name (`org/name`): absolute, relative, deeper than one slash, or present."""
    return os.path.isabs(path) or path.startswith(".") or path.count("/") > 1 or os.path.exists(path)


def load_pretrained(name_or_path: str | None, wandb_artifact: str | None = None, key: str = "model.name_or_path",
                    for_training: bool = False):
    """(model, tokenizer) from a Hub name, a local export (quantized or not), or a W&B artifact (which
    wins when set). Errors name `key`, the config key the path came from. A quantized export is refused
    `for_training`, before its weights load."""
    if wandb_artifact:
        name_or_path = download_wandb_artifact(wandb_artifact)
    if not name_or_path:
        raise ConfigError(f"{key} is empty: give a Hub name, a local directory or a W&B artifact")
    if looks_local(name_or_path):
        if not os.path.isdir(name_or_path):
            raise ConfigError(f"{key}={name_or_path} is not a directory")
        if not any(f.endswith((".safetensors", ".bin")) or f == "model.safetensors.index.json"
                   for f in os.listdir(name_or_path)):
            raise ConfigError(f"{key}={name_or_path} holds no model weights")
        if for_training:
            refuse_for_training(name_or_path, key, shown=wandb_artifact or name_or_path)
        elif is_quantized_export(name_or_path):
            # transformers would skip the unknown quantization and fill those layers with random weights
            return load_quantized(name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    model = AutoModelForSeq2SeqLM.from_pretrained(name_or_path)
    add_doc_sep(tokenizer, model)
    return model, tokenizer


def attention_window(config) -> int:
    """The largest local attention window of an LED config (`attention_window` is one int or one per layer):
    what inputs are padded to a multiple of."""
    window = config.attention_window
    return max(window) if isinstance(window, list | tuple) else window


def save_pretrained(model: PreTrainedModel, tokenizer, directory: str, config_yaml: str | None = None) -> str:
    """Write a Hugging Face directory (safetensors + tokenizer + composed config), atomically."""
    with atomic_output(directory) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if config_yaml is not None:
            with open(os.path.join(tmp, CONFIG_FILE), "w") as f:
                f.write(config_yaml)
    return directory
