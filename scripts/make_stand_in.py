#!/usr/bin/env python3
"""Write a KoGPT2 stand-in model directory: the real config and tokenizer, random weights.

The real weights live on the Hugging Face hub; where it can't be reached, a stand-in loads
through exactly the same code, at exactly the same size and speed, but writes gibberish.

    python scripts/make_stand_in.py models/kogpt2-stand-in          # full size (~500 MB)
    python scripts/make_stand_in.py models/tiny --tiny              # 2 layers, 64 wide

The config and tokenizer come from ../shared/kogpt2 (or --source). Without them, --tiny trains
a small Korean tokenizer instead, so tests still run on a bare clone.
"""

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from kogpt2.model.vocab import SPECIAL_TOKENS, tokenizer_config  # noqa: E402

DEFAULT_SOURCE = ROOT.parent / "shared" / "kogpt2"
FULL_SIZE_DIR = ROOT / "models" / "kogpt2-stand-in"  # the benches' default model
KOGPT2_CONFIG = {  # skt/kogpt2-base-v2, used where no config.json is at hand
    "model_type": "gpt2", "activation_function": "gelu_new", "bos_token_id": 0,
    "eos_token_id": 1, "pad_token_id": 3, "n_positions": 1024, "n_embd": 768,
    "n_head": 12, "n_layer": 12, "vocab_size": 51200,
}
TINY = {"n_layer": 2, "n_embd": 64, "n_head": 2}
KOREAN_SENTENCES = [
    "근육이 커지기 위해서는 충분한 단백질과 휴식이 필요하다.",
    "오늘은 날씨가 맑고 바람이 시원하게 불었다.",
    "서울의 봄은 벚꽃과 함께 찾아온다.",
    "우리는 도서관에서 책을 읽으며 오후를 보냈다.",
    "인공지능은 사람의 말을 이해하고 글을 쓴다.",
    "바다를 보러 부산으로 여행을 떠났다.",
    "김치찌개는 한국 사람들이 즐겨 먹는 음식이다.",
    "아이들은 운동장에서 공을 차며 뛰어놀았다.",
]


def train_small_tokenizer():
    """A KoGPT2-like tokenizer (BPE, Metaspace, NFKC, same special ids) from a few sentences."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=SPECIAL_TOKENS, min_frequency=1)
    tokenizer.train_from_iterator(KOREAN_SENTENCES * 4, trainer)
    return tokenizer


def make_stand_in(out_dir, *, tiny=False, source=DEFAULT_SOURCE, seed=0) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    out = Path(out_dir)
    source = Path(source)
    out.mkdir(parents=True, exist_ok=True)
    if (source / "tokenizer.json").is_file():
        shutil.copyfile(source / "tokenizer.json", out / "tokenizer.json")
        values = json.loads((source / "config.json").read_text())
    elif tiny:
        tokenizer = train_small_tokenizer()
        tokenizer.save(str(out / "tokenizer.json"))
        values = dict(KOGPT2_CONFIG, vocab_size=tokenizer.get_vocab_size())
    else:
        raise SystemExit(
            f"no KoGPT2 tokenizer at {source}: pass --source DIR (config.json + tokenizer.json) "
            "or use --tiny"
        )
    if tiny:
        values.update(TINY)
    config = tokenizer_config(values["n_positions"])
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(**values))
    model.save_pretrained(out)
    return out


def stand_in_at(out_dir=FULL_SIZE_DIR, *, tiny=False) -> Path:
    """The stand-in in `out_dir`, built there first if it isn't (the benches' default model;
    a directory a person names is theirs, never built into)."""
    out = Path(out_dir)
    if not (out / "config.json").is_file():
        print(f"building the {'tiny' if tiny else 'full-size'} stand-in in {out}",
              file=sys.stderr)
        make_stand_in(out, tiny=tiny)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", help="directory to write (created if missing)")
    parser.add_argument("--tiny", action="store_true", help="2 layers, 64 wide: for fast tests")
    parser.add_argument("--source", default=str(DEFAULT_SOURCE),
                        help="directory with KoGPT2's config.json and tokenizer.json")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    args = parser.parse_args(argv)
    out = make_stand_in(args.out_dir, tiny=args.tiny, source=args.source, seed=args.seed)
    print(f"wrote {'tiny ' if args.tiny else ''}stand-in model to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
