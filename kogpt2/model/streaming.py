"""A generation's text as it is made: each new token's text, once it decodes cleanly.

Only the `tokenizers` library, so every engine and the slim runtime stream the same way.
"""

from collections.abc import Collection

from tokenizers import Tokenizer

# What a decoder writes for bytes that are not (yet) a whole character: a Hangul syllable is 3
# bytes in UTF-8, and a byte-level tokenizer may split it across tokens.
REPLACEMENT = "\ufffd"


def continuation(tokenizer: Tokenizer, prompt_ids: list[int], new_ids: list[int], *,
                 special: bool = False) -> str:
    """The text that `new_ids` add after the prompt, with the space between them; special
    tokens are no text unless `special` (as a prompt is echoed)."""
    skip = not special
    # Decoding the new tokens alone would drop the space between the title and the text.
    prompt_text = tokenizer.decode(prompt_ids, skip_special_tokens=skip)
    full = tokenizer.decode(prompt_ids + new_ids, skip_special_tokens=skip)
    if full.startswith(prompt_text):
        return full[len(prompt_text):]
    return " " + tokenizer.decode(new_ids, skip_special_tokens=skip)


class TextStream:
    """Feed it a generation's new token ids in order; each `push` says what text they add.

    The pieces join to exactly `continuation(tokenizer, prompt_ids, new_ids)`, because each one
    is the difference between two decodings of the whole sequence (about 0.1 ms for 1,024
    tokens, against tens of ms per generated token): a window of the last few tokens would be
    cheaper, but exact only for decoders that never look back. Text that ends in a broken
    character is held back until the token that completes it comes.
    """

    def __init__(self, tokenizer: Tokenizer, prompt_ids: list[int], eos_id: int | None = None,
                 *, end_ids: Collection[int] = (), special: bool = False):
        self._tokenizer, self._prompt_ids, self._special = tokenizer, prompt_ids, special
        self._end_ids = {*end_ids, *(() if eos_id is None else (eos_id,))}
        self._new_ids: list[int] = []
        self._ended = False
        self.text = ""  # what the pieces so far add up to

    def push(self, token_id: int) -> str | None:
        """The text this token adds ("" while a character is incomplete); None for the
        token that ends the sequence (EOS, a stop id) and anything after it, which are not
        text."""
        if self._ended or token_id in self._end_ids:
            self._ended = True
            return None
        self._new_ids.append(token_id)
        text = continuation(self._tokenizer, self._prompt_ids, self._new_ids,
                            special=self._special)
        if text.endswith(REPLACEMENT) or not text.startswith(self.text):
            return ""
        piece, self.text = text[len(self.text):], text
        return piece


def token_pieces(tokenizer: Tokenizer, prompt_ids: list[int], new_ids: list[int], *,
                 special: bool = False) -> list[str]:
    """Each of `new_ids`' text, joining to exactly their continuation: "" for a token that only
    begins a character (the one completing it holds it whole); what is still broken at the end
    goes to the last piece."""
    stream = TextStream(tokenizer, prompt_ids, special=special)
    pieces = [stream.push(token) or "" for token in new_ids]
    full = continuation(tokenizer, prompt_ids, new_ids, special=special)
    if pieces and full.startswith(stream.text):
        pieces[-1] += full[len(stream.text):]
    return pieces
