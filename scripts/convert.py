#!/usr/bin/env python3
"""Prepare a KoGPT2 model (transformers format) for a fast engine, ahead of time.

    python scripts/convert.py skt/kogpt2-base-v2 models/kogpt2-ct2 --engine ctranslate2
    python scripts/convert.py models/kogpt2-stand-in models/stand-in-int8 --weight-format int8

OUT_DIR gets the engine's model, KoGPT2's tokenizer.json and a kogpt2-model.json recording the
source (hub id and revision) it came from, so `KOGPT2_MODEL=OUT_DIR` serves it without torch or
transformers. Preparing needs both (requirements.txt has them). The server does the same on
its own, into its cache, when given a transformers model; this is the way to do it at build time.
"""

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from kogpt2.model import engines, hub, prepare  # noqa: E402
from kogpt2.model.seam import ModelLoadError  # noqa: E402
from kogpt2.model.source import is_local, local_source  # noqa: E402

PREPARED = [kind for kind in engines.ENGINES.values() if kind is not engines.TRANSFORMERS]
DEFAULT_ENGINE = engines.PREFERRED[0].name


def say(stage: str, fraction: float | None = None) -> None:
    done = "" if fraction is None else f" ({round(fraction * 100)}%)"
    print(f"convert: {stage}{done}", file=sys.stderr, flush=True)


def convert(source: str, out_dir, *, engine: str = DEFAULT_ENGINE, weight_format: str = "int8",
            revision: str | None = None, force: bool = False, progress=say) -> Path:
    """Write `engine`'s copy of `source` (hub id or transformers directory) into `out_dir`."""
    kind = engines.ENGINES[engine]
    out = Path(out_dir)
    if out.exists() and not force:
        raise SystemExit(f"convert: {out} exists; pass --force to replace it")
    try:
        if is_local(source):
            origin = local_source(source)
        else:
            origin = hub.cached(source, revision) or hub.download(
                source, revision, lambda done, total: progress("downloading", done / (total or 1))
            )
        if engines.kind_of(origin.path) is not engines.TRANSFORMERS:
            raise ModelLoadError(f"{source!r} is not a transformers model directory")
        if out.resolve() == origin.path.resolve():
            raise ModelLoadError("OUT_DIR must differ from the source directory")
        if weight_format not in kind.weight_formats:
            raise ModelLoadError(
                f"the {engine} engine takes --weight-format {' or '.join(kind.weight_formats)}"
            )
        out.parent.mkdir(parents=True, exist_ok=True)
        work = prepare.new_work_dir(out.parent, f".{out.name}.")
        try:
            prepare.write_entry(origin, kind, weight_format, work, progress)
            if out.exists():
                shutil.rmtree(out)
            prepare.publish(work, out)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    except ModelLoadError as exc:
        raise SystemExit(f"convert: {exc}") from exc
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="hub id or local transformers model directory")
    parser.add_argument("out_dir", help="directory to write")
    parser.add_argument("--engine", choices=[kind.name for kind in PREPARED],
                        default=DEFAULT_ENGINE, help=f"default: {DEFAULT_ENGINE}")
    parser.add_argument("--weight-format", "--quantization", dest="weight_format",
                        default="int8", choices=["int8", "float32"],
                        help="weights of the prepared model (default: int8)")
    parser.add_argument("--revision", help="hub revision of a hub id (default: main)")
    parser.add_argument("--force", action="store_true", help="replace OUT_DIR if it exists")
    args = parser.parse_args(argv)
    out = convert(args.source, args.out_dir, engine=args.engine,
                  weight_format=args.weight_format, revision=args.revision, force=args.force)
    print(f"wrote the {args.engine} {args.weight_format} model to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
