"""The unmodified OpenAI Python SDK against the simulator."""

from __future__ import annotations

import openai
from conftest import FAST

KEY = "sk-sim-test-not-a-secret"


def test_openai_sdk_chat_completions_and_streaming(sim_factory):
    sim = sim_factory(*FAST, "--api-key", KEY, "--served-model-name", "tiny-chat")
    client = openai.OpenAI(base_url=sim.url + "/v1", api_key=KEY, max_retries=0, timeout=30)

    models = client.models.list()
    assert [m.id for m in models.data] == ["tiny-chat"]

    messages = [{"role": "user", "content": "What is the capital of France?"}]
    chat = client.chat.completions.create(model="tiny-chat", messages=messages, max_tokens=8,
                                          temperature=0)
    assert chat.choices[0].message.role == "assistant"
    assert chat.choices[0].finish_reason == "length"
    assert chat.usage.completion_tokens == 8
    assert chat.usage.total_tokens == chat.usage.prompt_tokens + 8

    stream = client.chat.completions.create(model="tiny-chat", messages=messages, max_tokens=8,
                                            temperature=0, stream=True,
                                            stream_options={"include_usage": True})
    parts, finish, usage = [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            parts.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    assert "".join(parts) == chat.choices[0].message.content
    assert finish == "length"
    assert usage.completion_tokens == 8

    comp = client.completions.create(model="tiny-chat", prompt="Once upon a time",
                                     max_tokens=5, temperature=0)
    assert comp.choices[0].text
    assert comp.usage.completion_tokens == 5

    bad = openai.OpenAI(base_url=sim.url + "/v1", api_key="wrong", max_retries=0, timeout=30)
    try:
        bad.chat.completions.create(model="tiny-chat", messages=messages, max_tokens=1)
        raise AssertionError("a wrong key was accepted")
    except openai.AuthenticationError as exc:
        assert exc.status_code == 401
