"""Token-by-token text: pieces that join to the answer's text and never show a broken character."""

import random
import threading

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from kogpt2.model import GenerationParams, Generator
from kogpt2.model.streaming import REPLACEMENT, TextStream, continuation
from kogpt2.model.vocab import eos_id, load_tokenizer

TITLE = "근육이 커지기 위해서는"
HANGUL_TEXT = (
    "근육이 커지기 위해서는 충분한 단백질과 휴식이 필요하다. 서울의 봄은 벚꽃과 함께 찾아온다."
)


def pieces_of(tokenizer, prompt_ids, new_ids, eos=1):
    stream = TextStream(tokenizer, prompt_ids, eos)
    return [stream.push(token_id) for token_id in new_ids]


@pytest.fixture(scope="module")
def kogpt2_tokenizer(tiny_model_dir):
    return load_tokenizer(tiny_model_dir)


@pytest.fixture(scope="module")
def byte_level_tokenizer():
    """A byte-level BPE so small that most Hangul syllables (3 UTF-8 bytes) span 2–3 tokens."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator([HANGUL_TEXT] * 4, trainer)
    return tokenizer


def test_pieces_join_to_the_continuation_for_any_ids(kogpt2_tokenizer):
    """Random ids (special tokens, spaces, punctuation included) on KoGPT2's tokenizer."""
    rng = random.Random(0)
    size = kogpt2_tokenizer.get_vocab_size()
    prompt = kogpt2_tokenizer.encode(TITLE, add_special_tokens=False).ids
    for _ in range(50):
        new = [rng.randrange(2, size) for _ in range(rng.randrange(1, 40))]
        pieces = pieces_of(kogpt2_tokenizer, prompt, new)
        assert "".join(pieces) == continuation(kogpt2_tokenizer, prompt, new)
        assert len(pieces) == len(new)


def test_a_hangul_character_split_across_tokens_is_held_until_it_is_whole(byte_level_tokenizer):
    prompt = byte_level_tokenizer.encode("서울의", add_special_tokens=False).ids
    new = byte_level_tokenizer.encode(" 봄은 벚꽃과 함께 찾아온다.", add_special_tokens=False).ids
    # The premise: decoding a prefix of these ids does break a character somewhere.
    assert any(REPLACEMENT in continuation(byte_level_tokenizer, prompt, new[:k])
               for k in range(1, len(new)))
    pieces = pieces_of(byte_level_tokenizer, prompt, new, eos=1)
    assert all(REPLACEMENT not in piece for piece in pieces)
    assert "" in pieces  # a token that only started a character added nothing yet
    assert "".join(pieces) == " 봄은 벚꽃과 함께 찾아온다."


def test_end_of_sequence_is_not_text(kogpt2_tokenizer):
    prompt = kogpt2_tokenizer.encode(TITLE, add_special_tokens=False).ids
    eos = eos_id(kogpt2_tokenizer)
    word = kogpt2_tokenizer.encode(" 운동", add_special_tokens=False).ids
    stream = TextStream(kogpt2_tokenizer, prompt, eos)
    assert [stream.push(i) for i in word] != []
    assert stream.push(eos) is None
    assert stream.push(word[0]) is None  # nothing after the end counts
    assert stream.text == " 운동"


@pytest.mark.parametrize("params", [GenerationParams(max_new_tokens=40),
                                    GenerationParams(do_sample=True, seed=5, max_new_tokens=40)])
def test_the_pieces_of_a_run_join_to_its_answer(tiny_model_dir, params):
    generator = Generator(str(tiny_model_dir), engine="transformers", threads=1)
    prompt = generator.check(TITLE, params)
    stream, pieces = generator.text_stream(prompt), []
    result = generator.run(prompt, on_token=lambda i, _: pieces.append(stream.push(i)))
    text = [piece for piece in pieces if piece is not None]
    assert len(text) == len(pieces) - (result.finish_reason == "eos")
    assert TITLE + "".join(text) == result.sequences[0].text


def test_a_cancelled_run_stops_with_what_was_streamed(tiny_model_dir):
    generator = Generator(str(tiny_model_dir), engine="transformers", threads=1)
    prompt = generator.check(TITLE, GenerationParams(max_new_tokens=50, repetition_penalty=1.0))
    stream, cancel, pieces = generator.text_stream(prompt), threading.Event(), []

    def listen(token_id, _):
        pieces.append(stream.push(token_id))
        if len(pieces) == 2:
            cancel.set()

    result = generator.run(prompt, cancel=cancel, on_token=listen)
    assert result.finish_reason == "cancelled" and result.generated_tokens == 2
    assert TITLE + "".join(pieces) == result.sequences[0].text
