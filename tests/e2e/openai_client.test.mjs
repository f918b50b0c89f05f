// kvstack serve through the official OpenAI Node client (npm `openai`, pinned
// in package.json): completions and chat, whole and streamed, usage with prefix
// hits, errors as the client's APIError, models.list(), and logprobs, n and
// echo (only API usage that openai v4 and v6 share).
//
//   node tests/e2e/openai_client.test.mjs BASE_URL EXPECTED_JSON
//
// BASE_URL is the server's OpenAI base ("http://127.0.0.1:PORT/v1").
// EXPECTED_JSON is a file the caller (tests/e2e/openai_client_test.cpp) writes
// with the engine's own greedy outputs: the prompts to send and the text,
// finish reason and prompt token count each must give. Exit code 0 when every
// test passes (node:test sets 1 otherwise).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import OpenAI from 'openai';

const [baseURL, expectedPath] = process.argv.slice(2);
if (!baseURL || !expectedPath) {
  console.error('usage: node openai_client.test.mjs BASE_URL EXPECTED_JSON');
  process.exit(2);
}
const want = JSON.parse(readFileSync(expectedPath, 'utf8'));

// No retries: a failure must show as it happened, not as a later success.
const client = new OpenAI({ baseURL, apiKey: 'unused', maxRetries: 0, timeout: 60_000 });

// kvstack's extensions (cache_salt, ...) ride along in the request body: the
// client sends every parameter it is given.
function completionParams(extra = {}) {
  const c = want.completion;
  return { model: want.model, prompt: c.prompt, max_tokens: c.max_tokens, temperature: 0, ...extra };
}
function chatParams(extra = {}) {
  const c = want.chat;
  return { model: want.model, messages: c.messages, max_tokens: c.max_tokens, temperature: 0, ...extra };
}

test('models.list() names the served model', async () => {
  const ids = [];
  for await (const model of client.models.list()) ids.push(model.id);
  assert.deepEqual(ids, [want.model]);
});

test('completions: the engine\'s greedy text', async () => {
  const r = await client.completions.create(completionParams({ cache_salt: 'e2e-completion' }));
  assert.equal(r.object, 'text_completion');
  assert.match(r.id, /^cmpl-/);
  assert.equal(r.model, want.model);
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].text, want.completion.text);
  assert.equal(r.choices[0].finish_reason, want.completion.finish_reason);
  assert.equal(r.usage.prompt_tokens, want.completion.prompt_tokens);
  assert.equal(r.usage.completion_tokens, want.completion.completion_tokens);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
  assert.equal(r.usage.prompt_tokens_details.cached_tokens, 0);
});

test('completions, streamed: the deltas add up to the same text, then usage', async () => {
  const stream = await client.completions.create(
    completionParams({ stream: true, stream_options: { include_usage: true }, cache_salt: 'e2e-completion-stream' }));
  let text = '';
  let finish = null;
  let usage = null;
  let chunks = 0;
  for await (const chunk of stream) {
    ++chunks;
    assert.equal(chunk.object, 'text_completion');
    if (chunk.usage) {
      assert.deepEqual(chunk.choices, []);
      usage = chunk.usage;
      continue;
    }
    assert.equal(usage, null, 'the usage chunk comes last');
    text += chunk.choices[0].text;
    if (chunk.choices[0].finish_reason) finish = chunk.choices[0].finish_reason;
  }
  assert.ok(chunks >= 3, `${chunks} chunks: expected the text in several`);
  assert.equal(text, want.completion.text);
  assert.equal(finish, want.completion.finish_reason);
  assert.ok(usage, 'stream_options.include_usage: a usage chunk');
  assert.equal(usage.prompt_tokens, want.completion.prompt_tokens);
  assert.equal(usage.completion_tokens, want.completion.completion_tokens);
});

test('chat: the engine\'s greedy reply', async () => {
  const r = await client.chat.completions.create(chatParams());
  assert.equal(r.object, 'chat.completion');
  assert.match(r.id, /^chatcmpl-/);
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.equal(r.choices[0].message.content, want.chat.text);
  assert.equal(r.choices[0].finish_reason, want.chat.finish_reason);
  assert.equal(r.usage.prompt_tokens, want.chat.prompt_tokens);
  assert.equal(r.usage.completion_tokens, want.chat.completion_tokens);
});

test('chat, streamed: role first, the deltas add up to the same reply', async () => {
  const stream = await client.chat.completions.create(
    chatParams({ stream: true, stream_options: { include_usage: true } }));
  let text = '';
  let role = null;
  let finish = null;
  let usage = null;
  for await (const chunk of stream) {
    assert.equal(chunk.object, 'chat.completion.chunk');
    if (chunk.usage) {
      usage = chunk.usage;
      continue;
    }
    const delta = chunk.choices[0].delta;
    if (delta.role) role ??= delta.role;
    text += delta.content ?? '';
    if (chunk.choices[0].finish_reason) finish = chunk.choices[0].finish_reason;
  }
  assert.equal(role, 'assistant');
  assert.equal(text, want.chat.text);
  assert.equal(finish, want.chat.finish_reason);
  assert.equal(usage?.completion_tokens, want.chat.completion_tokens);
});

test('chat, through the client\'s stream helper: the final completion it assembles', async () => {
  // chat.completions.stream() checks each chunk's shape as it accumulates.
  const runner = client.chat.completions.stream(chatParams());
  const final = await runner.finalChatCompletion();
  assert.equal(final.choices[0].message.role, 'assistant');
  assert.equal(final.choices[0].message.content, want.chat.text);
  assert.equal(final.choices[0].finish_reason, want.chat.finish_reason);
});

test('usage: a repeated long prompt is served from the prefix cache', async () => {
  const c = want.long_prompt;
  const params = { model: want.model, prompt: c.prompt, max_tokens: 4, temperature: 0, cache_salt: 'e2e-long' };
  const first = await client.completions.create(params);
  const again = await client.completions.create(params);
  assert.equal(first.usage.prompt_tokens, c.prompt_tokens);
  assert.equal(first.usage.prompt_tokens_details.cached_tokens, 0);
  assert.equal(again.usage.prompt_tokens, c.prompt_tokens);
  // Every full block but the one holding the last prompt token.
  assert.equal(again.usage.prompt_tokens_details.cached_tokens, c.cached_tokens);
  assert.ok(c.cached_tokens > 0);
  assert.equal(again.choices[0].text, first.choices[0].text);
});

test('a bad field surfaces as the client\'s APIError with status 400', async () => {
  await assert.rejects(client.completions.create(completionParams({ max_tokens: 0 })), (err) => {
    assert.ok(err instanceof OpenAI.APIError, `not an APIError: ${err}`);
    assert.ok(err instanceof OpenAI.BadRequestError);
    assert.equal(err.status, 400);
    assert.equal(err.param, 'max_tokens');
    assert.equal(err.type, 'invalid_request_error');
    assert.match(err.message, /max_tokens 0: must be at least 1/);
    return true;
  });
  await assert.rejects(client.chat.completions.create(chatParams({ n: 9 })), (err) => {
    assert.ok(err instanceof OpenAI.BadRequestError, `not a BadRequestError: ${err}`);
    assert.equal(err.param, 'n');
    return true;
  });
  // Streamed requests are validated before the stream starts: still a 400.
  await assert.rejects(client.chat.completions.create(chatParams({ stream: true, temperature: -1 })), (err) => {
    assert.ok(err instanceof OpenAI.BadRequestError, `not a BadRequestError: ${err}`);
    assert.equal(err.status, 400);
    return true;
  });
});

test('completions with logprobs: one entry per token, the alternatives as asked', async () => {
  const r = await client.completions.create(completionParams({ logprobs: 3 }));
  const lp = r.choices[0].logprobs;
  assert.equal(r.choices[0].text, want.completion.text, 'logprobs do not change the text');
  assert.equal(lp.tokens.length, r.usage.completion_tokens);
  assert.equal(lp.token_logprobs.length, lp.tokens.length);
  assert.equal(lp.text_offset[0], 0);
  for (let i = 0; i < lp.tokens.length; ++i) {
    assert.ok(lp.token_logprobs[i] <= 0);
    const top = lp.top_logprobs[i];
    assert.ok(Object.keys(top).length >= 3 && Object.keys(top).length <= 4, JSON.stringify(top));
    // Greedy: the chosen token is the most likely one.
    assert.equal(Math.max(...Object.values(top)), lp.token_logprobs[i]);
  }
});

test('completions with n: greedy choices all give the single answer; usage counts the prompt once', async () => {
  const r = await client.completions.create(completionParams({ n: 3 }));
  assert.equal(r.choices.length, 3);
  r.choices.forEach((c, i) => {
    assert.equal(c.index, i);
    assert.equal(c.text, want.completion.text);
  });
  assert.equal(r.usage.prompt_tokens, want.completion.prompt_tokens);
  assert.equal(r.usage.completion_tokens, 3 * want.completion.completion_tokens);
});

test('completions with echo, logprobs and max_tokens 0: the prompt scored', async () => {
  const r = await client.completions.create(completionParams({ echo: true, logprobs: 1, max_tokens: 0 }));
  const lp = r.choices[0].logprobs;
  assert.equal(r.choices[0].text, want.completion.prompt);
  assert.equal(r.usage.completion_tokens, 0);
  assert.equal(lp.tokens.length, want.completion.prompt_tokens);
  assert.equal(lp.token_logprobs[0], null, 'the first prompt token has nothing before it');
  for (const v of lp.token_logprobs.slice(1)) assert.ok(v <= 0);
});

test('chat with logprobs and n, streamed: each choice under its index, logprobs per token', async () => {
  const stream = await client.chat.completions.create(
    chatParams({ n: 2, logprobs: true, top_logprobs: 2, stream: true }));
  const texts = ['', ''];
  const entries = [0, 0];
  for await (const chunk of stream) {
    for (const c of chunk.choices) {
      texts[c.index] += c.delta.content ?? '';
      for (const t of c.logprobs?.content ?? []) {
        assert.equal(t.top_logprobs.length, 2);
        ++entries[c.index];
      }
    }
  }
  assert.deepEqual(texts, [want.chat.text, want.chat.text]);
  assert.ok(entries[0] > 0 && entries[0] === entries[1], `${entries}`);
});
