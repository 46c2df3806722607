"""
An agent loop written with the openai SDK, tested against the mock LLM:
the test scripts the model's turns (a tool call, then the answer that
reads the tool's result) and checks what the app sent.
"""

import json
from typing import Any

import pytest_twisted
from openai import OpenAI
from twisted.internet import threads

from twisted_stream.testing import MockLLMServer

WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def get_weather(city: str) -> dict[str, Any]:
    return {"city": city, "celsius": 18}


def run_agent(client: OpenAI, question: str) -> str:
    """The app's code under test: calls the tools until the model answers."""
    messages: list[Any] = [{"role": "user", "content": question}]
    while True:
        completion = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=[WEATHER])
        message = completion.choices[0].message
        if not message.tool_calls:
            return message.content or ""
        messages.append(message.model_dump(exclude_none=True))
        for call in message.tool_calls:
            assert call.type == "function"
            result = get_weather(**json.loads(call.function.arguments))
            messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)})


@pytest_twisted.ensureDeferred
async def test_agent_answers_from_the_tool(mock_llm: MockLLMServer) -> None:
    mock_llm.script(
        [
            {"match": {"user": "Paris"}, "tool_call": {"name": "get_weather", "arguments": {"city": "Paris"}}, "times": 1},
            {"match": {"tool_result": "18"}, "text": "It is 18 degrees in Paris."},
        ]
    )
    client = OpenAI(base_url=mock_llm.openaiBaseURL, api_key="sk-test")
    # The SDK blocks: it runs in a thread, and the reactor serves the mock.
    answer = await threads.deferToThread(run_agent, client, "What is the weather in Paris?")
    assert answer == "It is 18 degrees in Paris."
    sent = [json.loads(request["body"]) for request in mock_llm.requests()]
    assert [body["model"] for body in sent] == ["gpt-4o-mini", "gpt-4o-mini"]
    assert sent[1]["messages"][-1]["content"] == '{"city": "Paris", "celsius": 18}'
    assert [rule["matched"] for rule in mock_llm.matched()["rules"]] == [1, 1]
