"""Load an IDEFICS checkpoint (hub id or local directory) with the dtype, quantization and placement asked for.

One code path for every checkpoint: the real 9b/80b instruct and base models and the tiny test ones. Every
failure a user can fix (a wrong path, no network, not enough memory, no bitsandbytes) becomes one
`ModelLoadError` paragraph that says what to do; what happens while loading is logged.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from transformers import AutoModelForImageTextToText, AutoProcessor, BitsAndBytesConfig

from model.errors import ModelLoadError
from model.hub import hub_load_options
from model.loaded import END_OF_UTTERANCE, FAKE_IMAGE_TOKEN, IMAGE_TOKEN, LoadedModel, LoadOptions
from model.tokenization import SERVED_FORMAT_OPTIONS, check_tokenization

logger = logging.getLogger(__name__)

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
QUANTIZATIONS = ("none", "8bit", "4bit")
WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.safetensors.index.json", "*.bin.index.json")
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")
MEMORY_NEEDS = (
    "The 9B model needs about 20 GB of GPU memory in bfloat16/float16, about 10 GB with "
    "MODEL_QUANTIZATION=8bit and about 7 GB with MODEL_QUANTIZATION=4bit (the 80B model: about 160, 85 "
    "and 45 GB)."
)


def load_model(options: LoadOptions) -> LoadedModel:
    """Load processor and weights as `options` say; raise `ModelLoadError` with advice on failure."""
    started = time.perf_counter()
    source = resolve_source(options.model_id)
    dtype = resolve_dtype(options.dtype)
    quantization = quantization_config(options.quantization, dtype)
    logger.info(
        "Loading %s (dtype %s, quantization %s, device_map %s)",
        source, str(dtype).removeprefix("torch."), options.quantization, options.device_map,
    )
    with _load_errors(options):
        hub_options = {} if Path(source).is_dir() else hub_load_options(source)
        processor = AutoProcessor.from_pretrained(source, **SERVED_FORMAT_OPTIONS, **hub_options)
        logger.info(
            "Processor %s loaded (%d tokens, images %s px)",
            type(processor).__name__, len(processor.tokenizer), processor.image_processor.image_size,
        )
        _log_tokenization(processor.tokenizer)
        model = AutoModelForImageTextToText.from_pretrained(
            source, dtype=dtype, quantization_config=quantization, device_map=_device_map(options),
            **_offload_options(options), **hub_options,
        ).eval()
    seconds = time.perf_counter() - started
    _log_weights(model, seconds)
    return _describe(model, processor, options, dtype, seconds)


def resolve_source(model_id: str) -> str:
    """Return a checked local directory, or `model_id` unchanged when it is a hub id."""
    path = Path(model_id).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(
                f"MODEL_ID {model_id!r} is a file, not a model directory. Point MODEL_ID at the directory "
                "that holds config.json, the weights and the processor files, or use a hub id such as "
                "HuggingFaceM4/idefics-9b-instruct."
            )
        check_model_directory(path)
        return str(path)
    if _looks_like_path(model_id):
        raise ModelLoadError(
            f"The model directory {model_id!r} does not exist. Check MODEL_ID: it must be an existing "
            "directory (for example one written by `hf download HuggingFaceM4/idefics-9b-instruct "
            "--local-dir DIR` or `idefics-bot make-tiny-model DIR`) or a hub id such as "
            "HuggingFaceM4/idefics-9b-instruct."
        )
    return model_id


def check_model_directory(path: Path) -> None:
    """Raise `ModelLoadError` naming what a local checkpoint directory lacks."""
    missing = []
    if not (path / "config.json").is_file():
        missing.append("config.json (the model configuration)")
    if not any(next(path.glob(pattern), None) for pattern in WEIGHT_PATTERNS):
        missing.append("the weights (*.safetensors or *.bin)")
    if not any((path / name).is_file() for name in PROCESSOR_FILES):
        missing.append("the image processor (preprocessor_config.json or processor_config.json)")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        missing.append("the tokenizer (tokenizer.json or tokenizer.model)")
    if missing:
        raise ModelLoadError(
            f"The model directory {str(path)!r} is incomplete: it has no {'; no '.join(missing)}. "
            "A download may have been interrupted: download it again with `hf download "
            "HuggingFaceM4/idefics-9b-instruct --local-dir DIR` (or `huggingface-cli download ...`), "
            "or point MODEL_ID at a complete directory."
        )


def resolve_dtype(name: str) -> torch.dtype:
    """auto: bfloat16 on CUDA that supports it, float16 on older CUDA, float32 on CPU."""
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if name not in DTYPES:
        raise ModelLoadError(
            f"MODEL_DTYPE {name!r} is not supported: use auto, bfloat16, float16 or float32."
        )
    return DTYPES[name]


def quantization_config(mode: str, compute_dtype: torch.dtype) -> BitsAndBytesConfig | None:
    """The bitsandbytes settings for 8bit/4bit (NF4, double quantization); None for no quantization."""
    if mode not in QUANTIZATIONS:
        raise ModelLoadError(
            f"MODEL_QUANTIZATION {mode!r} is not supported: use none, 8bit or 4bit."
        )
    if mode == "none":
        return None
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ModelLoadError(
            f"MODEL_QUANTIZATION={mode} needs the bitsandbytes library, which is not installed. Install "
            "it with `pip install 'idefics-bot[quantization]'` (or `pip install bitsandbytes`), or set "
            f"MODEL_QUANTIZATION=none if you have enough memory. {MEMORY_NEEDS}"
        )
    # Passing skip modules replaces the defaults: keep the embeddings and the output head unquantized.
    skip = ["lm_head", "embed_tokens"]
    if mode == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
        llm_int8_skip_modules=skip,
    )


def _device_map(options: LoadOptions) -> str | dict[str, str | int] | None:
    if options.device_map == "auto" and not torch.cuda.is_available():
        return "cpu"  # nothing to spread over; accelerate's planner only adds noise here
    return options.device_map


def _offload_options(options: LoadOptions) -> dict[str, str]:
    return {} if options.offload_folder is None else {"offload_folder": options.offload_folder}


def _looks_like_path(model_id: str) -> bool:
    return (
        model_id.startswith(("/", "./", "../", "~", "."))
        or "\\" in model_id
        or model_id.count("/") > 1
        or model_id.strip() != model_id
    )


@contextmanager
def _load_errors(options: LoadOptions) -> Iterator[None]:
    """Turn the library's exceptions into `ModelLoadError`s a user can act on."""
    try:
        yield
    except ModelLoadError:
        raise
    except (torch.cuda.OutOfMemoryError, MemoryError) as error:
        raise ModelLoadError(_out_of_memory_message(options, error)) from error
    except (OSError, ValueError, RuntimeError, ImportError) as error:
        text = str(error)
        lowered = text.lower()
        if "out of memory" in lowered or "dispatched on the cpu or the disk" in lowered:
            raise ModelLoadError(_out_of_memory_message(options, error)) from error
        if "bitsandbytes" in lowered or "quantiz" in lowered:
            raise ModelLoadError(_backend_message(options, error)) from error
        if isinstance(error, OSError) and not Path(options.model_id).expanduser().exists():
            raise ModelLoadError(_hub_message(options, error)) from error
        raise ModelLoadError(
            f"Could not load the model {options.model_id!r}: {_first_line(text)} Check that MODEL_ID "
            "points at an IDEFICS checkpoint (config.json, weights and processor files)."
        ) from error


def _hub_message(options: LoadOptions, error: BaseException) -> str:
    return (
        f"Could not get {options.model_id!r} from the Hugging Face hub and it is not in the local "
        f"cache ({_first_line(str(error))}). Either this machine has no network (or HF_HUB_OFFLINE=1 is "
        "set), the id is misspelled, or you meant a local directory that does not exist. On a machine "
        "with network, pre-download it with `hf download "
        f"{options.model_id}` (or `huggingface-cli download {options.model_id}`) into the cache, or with "
        "`--local-dir DIR` and then set MODEL_ID=DIR to load from that directory."
    )


def _out_of_memory_message(options: LoadOptions, error: BaseException) -> str:
    return (
        f"Not enough memory to load {options.model_id!r} with MODEL_DTYPE={options.dtype} and "
        f"MODEL_QUANTIZATION={options.quantization} ({_first_line(str(error))}). {MEMORY_NEEDS} "
        "Try MODEL_QUANTIZATION=4bit, free the GPU from other programs, or use a larger GPU."
    )


def _backend_message(options: LoadOptions, error: BaseException) -> str:
    return (
        f"MODEL_QUANTIZATION={options.quantization} could not be used: {_first_line(str(error))} "
        "bitsandbytes needs a supported backend (an NVIDIA GPU with CUDA; recent versions also run "
        "4-bit on CPU). Update bitsandbytes, run on a GPU, or set MODEL_QUANTIZATION=none if you "
        f"have enough memory. {MEMORY_NEEDS}"
    )


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else "no details"
    return line if line.endswith(".") else line + "."


def _describe(model, processor, options: LoadOptions, dtype: torch.dtype, seconds: float) -> LoadedModel:
    tokenizer = processor.tokenizer
    image_id, fake_id = tokenizer.convert_tokens_to_ids([IMAGE_TOKEN, FAKE_IMAGE_TOKEN])
    if tokenizer.unk_token_id in (image_id, fake_id) or None in (image_id, fake_id):
        raise ModelLoadError(
            f"The tokenizer of {options.model_id!r} has no {IMAGE_TOKEN} / {FAKE_IMAGE_TOKEN} tokens, so "
            "it is not an IDEFICS checkpoint. Point MODEL_ID at an IDEFICS model."
        )
    end_of_utterance_id = tokenizer.convert_tokens_to_ids(END_OF_UTTERANCE)
    if end_of_utterance_id in (None, tokenizer.unk_token_id):
        logger.warning("%s has no %s token; replies stop at </s> only", options.model_id, END_OF_UTTERANCE)
        end_of_utterance_id = tokenizer.eos_token_id
    return LoadedModel(
        model=model,
        processor=processor,
        model_id=options.model_id,
        device=model.get_input_embeddings().weight.device,
        dtype=dtype,
        max_positions=int(model.config.max_position_embeddings),
        end_of_utterance_id=int(end_of_utterance_id),
        eos_token_id=int(tokenizer.eos_token_id),
        image_token_ids=(int(image_id), int(fake_id)),
        load_seconds=seconds,
    )


def _log_tokenization(tokenizer) -> None:
    check = check_tokenization(tokenizer)
    healthy = check.served_format and check.processor_agrees
    logger.log(logging.INFO if healthy else logging.WARNING, "%s", check.describe())


def _log_weights(model, seconds: float) -> None:
    placement = getattr(model, "hf_device_map", None) or {"": str(next(model.parameters()).device)}
    per_device = Counter(str(device) for device in placement.values())
    logger.info(
        "Weights of %s loaded in %.1f s: %.1f M parameters, %.1f MB in memory, placed on %s",
        type(model).__name__, seconds, sum(p.numel() for p in model.parameters()) / 1e6,
        model.get_memory_footprint() / 1e6,
        ", ".join(f"{device} ({count} module groups)" for device, count in sorted(per_device.items())),
    )
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            logger.info(
                "cuda:%d: %.2f GB allocated", index, torch.cuda.memory_allocated(index) / 1e9
            )
