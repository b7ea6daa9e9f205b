// A three-turn streamed conversation through the official openai npm package, sent the way
// JavaScript users send one: the whole growing history on every call.
//
// Reads OPENAI_BASE_URL, OPENAI_API_KEY and MODEL from the environment and prints one line of
// JSON to stdout: {"turns": [{"id", "text", "chunk_times_ms", "usage"}, ...]}, where
// chunk_times_ms holds, for each chunk with content, the milliseconds since its request began.
// On any error it prints the error to stderr and exits 1.
import OpenAI from "openai";

const { OPENAI_BASE_URL: baseURL, OPENAI_API_KEY: apiKey, MODEL: model } = process.env;
const FOLLOW_UPS = ["Second question: and Django?", "Third question: and streaming?"];
let currentTurn = 0;

async function streamTurn(client, messages) {
  const started = performance.now();
  const stream = await client.chat.completions.create({
    model,
    messages,
    stream: true,
    stream_options: { include_usage: true },
  });
  const turn = { id: null, text: "", chunk_times_ms: [], usage: null };
  for await (const chunk of stream) {
    turn.id ??= chunk.id;
    const content = chunk.choices[0]?.delta?.content;
    if (content) {
      turn.chunk_times_ms.push(Math.round(performance.now() - started));
      turn.text += content;
    }
    if (chunk.usage) turn.usage = chunk.usage;
  }
  return turn;
}

async function main() {
  const settings = { OPENAI_BASE_URL: baseURL, OPENAI_API_KEY: apiKey, MODEL: model };
  for (const [name, value] of Object.entries(settings)) {
    if (!value) throw new Error(`${name} is not set`);
  }
  const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 30000 });
  const messages = [
    { role: "system", content: "You are terse." },
    { role: "user", content: "First question: what is Python?" },
  ];
  const turns = [];
  for (const followUp of [...FOLLOW_UPS, null]) {
    currentTurn = turns.length + 1;
    const turn = await streamTurn(client, messages);
    turns.push(turn);
    if (followUp === null) break;
    messages.push({ role: "assistant", content: turn.text });
    messages.push({ role: "user", content: followUp });
  }
  process.stdout.write(JSON.stringify({ turns }) + "\n");
}

main().catch((error) => {
  const status = error?.status ?? "no status";
  console.error(`turn ${currentTurn} failed (status ${status}): ${error?.message ?? error}`);
  if (error?.error) console.error(JSON.stringify(error.error));
  process.exit(1);
});
