"""Request bodies, checked by pydantic: a wrong type or range becomes an OpenAI-style 400 naming the field.

Fields the OpenAI API has but this server does not implement are accepted only at their neutral value
(a penalty of 0, no tools), so that a request never silently gets less than it asked for. Other unknown
keys are kept in `model_extra`: Zyphra's flat RSA keys arrive that way. Checks across fields raise
`APIError` directly (pydantic lets it through), so the error names the field at fault.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from posttrain.serve.errors import APIError

MAX_LOGPROBS = 20
NEUTRAL = {  # unsupported OpenAI fields: name -> values that ask for nothing
    "presence_penalty": (None, 0, 0.0),
    "frequency_penalty": (None, 0, 0.0),
    "logit_bias": (None, {}),
    "tools": (None, []),
    "functions": (None, []),
    "tool_choice": (None, "none", "auto"),
    "suffix": (None, ""),
}


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None

    @model_validator(mode="after")
    def _text_only(self) -> ChatMessage:
        if isinstance(self.content, list) and any(p.type != "text" or p.text is None for p in self.content):
            raise ValueError("only text content parts are supported")
        return self

    def as_template_message(self) -> dict[str, str]:
        """`{"role", "content"}` with list content joined, the form chat templates take."""
        content = self.content if isinstance(self.content, str) else "".join(p.text or "" for p in self.content or [])
        return {"role": self.role, "content": content}


class StreamOptions(BaseModel):
    include_usage: bool = False


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=-1)  # vLLM's extension; -1 and 0 both disable it
    n: int = Field(1, ge=1, le=128)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = None

    @model_validator(mode="after")
    def _neutral_extras(self) -> _Sampling:
        for name, neutral in NEUTRAL.items():
            if name in (self.model_extra or {}) and self.model_extra[name] not in neutral:
                raise APIError(f"{name} is not supported by this server", param=name)
        if isinstance(self.stop, list) and not all(self.stop):
            raise APIError("stop strings must not be empty", param="stop")
        return self

    @property
    def stop_strings(self) -> tuple[str, ...]:
        if self.stop is None or self.stop == "":
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)
    response_format: dict[str, Any] | None = None
    rsa: bool | dict[str, Any] | None = None

    @model_validator(mode="after")
    def _chat_fields(self) -> ChatCompletionRequest:
        if self.response_format not in (None, {"type": "text"}):
            raise APIError("response_format other than text is not supported by this server", param="response_format")
        if self.top_logprobs and not self.logprobs:
            raise APIError("top_logprobs needs logprobs=true", param="top_logprobs")
        return self

    @property
    def token_budget(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(16, ge=0)  # OpenAI's default; 0 scores the prompt (needs echo)
    logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)
    echo: bool = False
    best_of: int | None = None

    @model_validator(mode="after")
    def _completion_fields(self) -> CompletionRequest:
        if self.max_tokens == 0 and not self.echo:
            raise APIError("max_tokens must be >= 1 (0 only with echo=true, to score the prompt)", param="max_tokens")
        if self.best_of not in (None, self.n):
            raise APIError("best_of other than n is not supported by this server", param="best_of")
        if self.max_tokens == 0 and self.stream:
            raise APIError("max_tokens=0 cannot be streamed", param="stream")
        return self

    @property
    def prompts(self) -> list[str | list[int]]:
        """One entry per prompt: text, or token ids."""
        prompt = self.prompt
        if isinstance(prompt, str):
            return [prompt]
        if prompt and all(isinstance(p, int) for p in prompt):
            return [list(prompt)]
        return list(prompt)


class TokenizeRequest(BaseModel):
    model: str | None = None
    prompt: str | None = None
    messages: list[ChatMessage] | None = None
    add_special_tokens: bool = True

    @model_validator(mode="after")
    def _one_input(self) -> TokenizeRequest:
        if (self.prompt is None) == (self.messages is None):
            raise APIError("give exactly one of prompt and messages", param="prompt")
        return self


class DetokenizeRequest(BaseModel):
    model: str | None = None
    tokens: list[int]
