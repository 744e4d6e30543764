#!/usr/bin/env python3
"""Convert a KoGPT2 model (transformers format) into a CTranslate2 directory that serves alone.

    python scripts/convert.py skt/kogpt2-base-v2 models/kogpt2-ct2 --quantization int8
    python scripts/convert.py models/kogpt2-stand-in models/stand-in-ct2 --quantization int8

OUT_DIR gets CTranslate2's model.bin, config.json and vocabulary, plus KoGPT2's tokenizer.json
and a tokenizer_config.json, so `KOGPT2_MODEL=OUT_DIR` serves with the ctranslate2 engine
without torch or transformers. Converting needs both (requirements.txt has them).
"""

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

QUANTIZATIONS = ["int8", "int8_float32", "float32"]  # what CTranslate2 computes on CPUs


def kogpt2_converter(source_dir: str):
    from ctranslate2.converters import TransformersConverter
    from transformers import PreTrainedTokenizerFast

    from kogpt2.model.transformers_engine import KOGPT2_SPECIAL_TOKENS

    class KoGPT2Converter(TransformersConverter):
        # AutoTokenizer would add <|endoftext|> as a 51,201st token, which the model lacks.
        def load_tokenizer(self, tokenizer_class, model_name_or_path, **kwargs):
            return PreTrainedTokenizerFast.from_pretrained(
                model_name_or_path, **KOGPT2_SPECIAL_TOKENS, **kwargs
            )

    return KoGPT2Converter(source_dir)


def convert(source: str, out_dir, *, quantization: str = "int8", force: bool = False) -> Path:
    """Write the CTranslate2 model of `source` (hub id or directory) and its tokenizer."""
    from kogpt2.model.engine import ModelLoadError, check_local_dir, is_local, short_reason
    from kogpt2.model.hub import snapshot
    from kogpt2.model.transformers_engine import KOGPT2_SPECIAL_TOKENS

    try:
        source_dir = check_local_dir(source if is_local(source) else snapshot(source))
    except ModelLoadError as exc:
        raise SystemExit(f"convert: {exc}") from exc
    out = Path(out_dir)
    if out.resolve() == source_dir.resolve():
        raise SystemExit("convert: OUT_DIR must differ from the source directory")
    try:
        kogpt2_converter(str(source_dir)).convert(str(out), quantization=quantization, force=force)
    except RuntimeError as exc:  # CTranslate2 refuses an existing OUT_DIR this way
        raise SystemExit(f"convert: {short_reason(exc)}") from exc
    except (OSError, ValueError) as exc:
        raise SystemExit(f"convert: could not convert {source!r}: {short_reason(exc)}") from exc
    model_config = json.loads((source_dir / "config.json").read_text(encoding="utf-8"))
    shutil.copyfile(source_dir / "tokenizer.json", out / "tokenizer.json")
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **KOGPT2_SPECIAL_TOKENS,
        # The ctranslate2 engine reads the model's positions here: CTranslate2 doesn't keep them.
        "model_max_length": model_config["n_positions"],
    }
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="hub id or local transformers model directory")
    parser.add_argument("out_dir", help="directory to write")
    parser.add_argument("--quantization", choices=QUANTIZATIONS, default="int8",
                        help="weight type of the converted model (default: int8)")
    parser.add_argument("--force", action="store_true", help="overwrite OUT_DIR if it exists")
    args = parser.parse_args(argv)
    out = convert(args.source, args.out_dir, quantization=args.quantization, force=args.force)
    print(f"wrote {args.quantization} CTranslate2 model to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
