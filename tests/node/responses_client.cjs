// The npm `openai` client's Responses API against the proxy: create (not streamed), create
// (streamed), and the stream helper. Prints what each saw as JSON; exits 1 on any error.
const OpenAI = require("openai");

async function main() {
  const [baseURL, apiKey] = process.argv.slice(2);
  const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
  const created = await client.responses.create({ model: "gpt-5.5", input: "Say hi" });
  let text = "";
  let status = null;
  const stream = await client.responses.create({ model: "gpt-5.5", input: "Say hi",
                                                 stream: true });
  for await (const event of stream) {
    if (event.type === "response.output_text.delta") text += event.delta;
    if (event.type === "response.completed") status = event.response.status;
  }
  const helper = client.responses.stream({ model: "gpt-5.5", input: "Say hi" });
  const final = await helper.finalResponse();
  console.log(JSON.stringify({
    created: { output_text: created.output_text, status: created.status },
    streamed: { text, status },
    // The helper's final response is the `response.completed` event's, as OpenAI sends it:
    // no `output_text` (only `create` adds that), the text is in the message item.
    helper: { output_text: final.output.filter((item) => item.type === "message")
      .flatMap((item) => item.content).map((part) => part.text).join("") },
  }));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
