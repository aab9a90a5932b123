// Drives the proxy with the `openai` npm package, the client library Roo Code uses, the way
// Roo Code's OpenAI Compatible provider does: streamed, with usage, tool calls gathered by
// index (id and name from each call's first chunk, arguments appended). Prints one JSON
// object per request on stdout for the Python test to check.
//
//   NODE_PATH=.tools/node/node_modules node tests/node/openai_client.cjs BASE_URL API_KEY
const OpenAI = require("openai");

async function streamed(client, body) {
  const stream = await client.chat.completions.create({
    ...body, stream: true, stream_options: { include_usage: true },
  });
  const result = { content: "", toolCalls: [], finishReason: null, usage: null, roles: [] };
  for await (const chunk of stream) {
    if (chunk.usage) result.usage = chunk.usage;
    const choice = chunk.choices[0];
    if (!choice) continue;
    if (choice.delta.role) result.roles.push(choice.delta.role);
    if (choice.delta.content) result.content += choice.delta.content;
    for (const call of choice.delta.tool_calls ?? []) {
      if (!result.toolCalls[call.index]) {
        // Roo Code starts a tool call from its first chunk: it must carry id and name.
        result.toolCalls[call.index] = { id: call.id, name: call.function?.name, arguments: "" };
      }
      result.toolCalls[call.index].arguments += call.function?.arguments ?? "";
    }
    if (choice.finish_reason) result.finishReason = choice.finish_reason;
  }
  return result;
}

async function main() {
  const [baseURL, apiKey] = process.argv.slice(2);
  const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
  const tools = [{
    type: "function",
    function: {
      name: "read_file", description: "Read a file.", strict: true,
      parameters: {
        type: "object", properties: { path: { type: "string" } },
        required: ["path"], additionalProperties: false,
      },
    },
  }];
  const common = {
    model: "gpt-5", temperature: 0, reasoning_effort: "medium",
    tools, tool_choice: "auto", parallel_tool_calls: true,
  };
  const toolCall = await streamed(client, {
    ...common, messages: [
      { role: "system", content: "You are Roo." },
      { role: "user", content: "Read the README. mock-scenario:tool_call" },
    ],
  });
  const text = await streamed(client, {
    ...common, messages: [{ role: "user", content: "Just say hello." }],
  });
  console.log(JSON.stringify({ toolCall, text }));
}

main().catch((error) => { console.error(error); process.exit(1); });
