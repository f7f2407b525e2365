"""A prompt's token ids, checked against the model's context; a chat's with what the
messages say tokenized as text.

Rendered by the chat template and tokenized as one string, a message that contains the
model's own markup (`<|im_end|><|im_start|>system ...`) is tokenized as that markup: a user
could write a system or assistant turn of their own. So the template is rendered with a
placeholder for each message's content; the template's own text is tokenized with its
special tokens, each content with `split_special_tokens=True`, and the pieces are joined.
The text is the same either way; only at the edge of a content that starts or ends with
whitespace may the tokens split differently from tokenizing the chat as one string.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from daemon.engine.generation import GenerationRequest
from daemon.errors import InvalidInput

# Private-use characters: in no chat template, and left alone by the ones that trim.
_MARK = "\ue000{}\ue001"


def tokenized(request: GenerationRequest, tokenizer: Any, context: int) -> GenerationRequest:
    """`request` with its prompt's token ids (a raw prompt as the tokenizer encodes it, a
    chat through its template); InvalidInput if it is empty, or if it and `max_tokens` do
    not fit in `context` tokens."""
    if request.messages is not None:
        ids = chat_token_ids(tokenizer, request.messages)
        field = "messages"
    else:
        assert request.prompt is not None
        ids = tokenizer(request.prompt).input_ids
        field = "prompt"
    if not ids:
        raise InvalidInput(f"{field}: the prompt is empty once tokenized", field)
    room = context - len(ids)
    if room < 1:
        raise InvalidInput(f"{field}: the prompt is {len(ids)} tokens; this model's context "
                           f"holds {context}", field)
    if request.sampling.max_tokens > room:
        raise InvalidInput(f"max_tokens: the prompt takes {len(ids)} of this model's "
                           f"{context}-token context, so at most {room} tokens can be "
                           f"generated; got {request.sampling.max_tokens}", "max_tokens")
    return dataclasses.replace(request, prompt_token_ids=tuple(ids))


def chat_token_ids(tokenizer: Any, messages: Sequence[Mapping[str, str]]) -> list[int]:
    """The prompt's ids for `messages`, rendered with a generation prompt."""
    marks = [_MARK.format(i) for i in range(len(messages))]
    rendered: str = tokenizer.apply_chat_template(
        [{**message, "content": mark} for message, mark in zip(messages, marks)],
        tokenize=False, add_generation_prompt=True)
    ids: list[int] = []
    start = 0
    for message, mark in zip(messages, marks):
        at = rendered.find(mark, start)
        if at < 0:  # the template does more with the content than place it
            return _whole(tokenizer, messages)
        ids += _ids(tokenizer, rendered[start:at], markup=True)
        ids += _ids(tokenizer, message["content"], markup=False)
        start = at + len(mark)
    return ids + _ids(tokenizer, rendered[start:], markup=True)


def _ids(tokenizer: Any, text: str, *, markup: bool) -> list[int]:
    if not text:
        return []
    ids: list[int] = tokenizer(text, add_special_tokens=False,
                               split_special_tokens=not markup).input_ids
    return ids


def _whole(tokenizer: Any, messages: Sequence[Mapping[str, str]]) -> list[int]:
    """For a template that transforms contents: rendered as one, and refused if a message
    holds a special token, since it could not be kept as text."""
    specials = [token.content for token in tokenizer.added_tokens_decoder.values()
                if token.special]
    for index, message in enumerate(messages):
        for special in specials:
            if special in message["content"]:
                raise InvalidInput(f"messages[{index}].content: contains {special!r}, this "
                                   "model's own markup", f"messages[{index}].content")
    rendered: str = tokenizer.apply_chat_template(list(messages), tokenize=False,
                                                  add_generation_prompt=True)
    return _ids(tokenizer, rendered, markup=True)
