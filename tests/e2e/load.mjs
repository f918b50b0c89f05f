// Load client of scripts/bench-serve: CLIENTS concurrent streaming clients
// (the official OpenAI Node client, /v1/completions) against a running
// `kvstack serve` for DURATION seconds. Each prompt is a long system prompt,
// then a short request of its own. Half of the clients share a few system
// prompts (one of them pinned first), the other half send system prompts no
// one else sends, starting with a unique head so that not even their first KV
// block is shared. (Completions, not chat: a chat template's fixed head would
// fill a first block common to every request, so no request would miss.)
// Each client sends its next request when the last one ends; when the time is
// up, requests in flight finish (none is cut off).
//
// Per request: TTFT (request sent -> first chunk with text), completion and
// prompt tokens, and cached_tokens from the usage chunk
// (stream_options.include_usage). A request "hit" when cached_tokens > 0.
//
// At the end it checks that the KV memory holds nothing but pins and cached
// blocks: GET /v1/cache/stats shows no block in use and no live sequence, the
// pinned blocks are the pin's, free + cached + pinned = total; /health shows
// no request in flight; /metrics no request running or waiting.
//
//   node tests/e2e/load.mjs --base-url http://127.0.0.1:PORT [--clients 64]
//     [--duration 60] [--max-tokens 64] [--shared-prompts 4] [--json FILE]
//
// Prints a report; exit code 0 only with zero errors and a clean end state.
import { writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';

import OpenAI from 'openai';

const { values: args } = parseArgs({
  options: {
    'base-url': { type: 'string' },
    clients: { type: 'string', default: '64' },
    duration: { type: 'string', default: '60' },
    'max-tokens': { type: 'string', default: '64' },
    'shared-prompts': { type: 'string', default: '4' },
    json: { type: 'string' },
  },
});
if (!args['base-url']) {
  console.error('usage: node load.mjs --base-url http://127.0.0.1:PORT [--clients N] [--duration S] ' +
                '[--max-tokens N] [--shared-prompts N] [--json FILE]');
  process.exit(2);
}
const server = args['base-url'].replace(/\/+$/, '');
const clients = Number(args.clients);
const durationS = Number(args.duration);
const maxTokens = Number(args['max-tokens']);
const sharedPrompts = Number(args['shared-prompts']);
const sharedClients = Math.floor(clients / 2);

const openai = new OpenAI({ baseURL: `${server}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 120_000 });

// A system prompt of about 190 tokens (11 full blocks of 16) for
// stories260K: a head that makes it unique (or shared), then the same body.
const BODY = [
  'You are a storyteller for small children.',
  'You tell short and happy stories about a little cat named Tom, his friend the dog, and the birds that sing',
  'in the big green garden behind the old red house near the sea.',
  'Every story has a beginning, a middle and an end, and it ends with the cat asleep in the warm sun.',
].join(' ');
const NAMES = ['Lily', 'Tom', 'Sam', 'Anna', 'Ben', 'Mia', 'Max', 'Sue', 'Tim', 'Lucy', 'Jack', 'Zoe'];
const THINGS = ['a red ball', 'a big tree', 'a little boat', 'a blue bird', 'a kind dog', 'a shiny star',
                'a warm cake', 'a happy frog', 'a funny hat', 'a green apple'];
let nonce = 0;
function pick(list) { return list[Math.floor(Math.random() * list.length)]; }
function sharedSystem(k) { return `Storyteller number ${k}. ${BODY}`; }
function uniqueSystem() {
  // A head no other request has: its first KV block, and so every block after
  // it, is new to the cache.
  const n = ++nonce;
  return `Visitor ${n} ${pick(NAMES)} ${pick(NAMES)} ${Date.now() % 100000}. ${BODY}`;
}
function request() { return `\n\nTell me a story about ${pick(NAMES)} and ${pick(THINGS)}.\n\nOnce upon a time,`; }

const records = [];
const errors = [];

async function oneRequest(client, shared, first) {
  const system = shared ? sharedSystem(client % sharedPrompts) : uniqueSystem();
  const rec = { client, group: shared ? 'shared' : 'unique', first, ttft_ms: null, latency_ms: null,
                completion_tokens: 0, prompt_tokens: 0, cached_tokens: 0 };
  const t0 = performance.now();
  try {
    const stream = await openai.completions.create({
      model: modelId,
      prompt: system + request(),
      max_tokens: maxTokens,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
      ignore_eos: true,  // kvstack's extension: every request generates max_tokens
    });
    let usage = null;
    for await (const chunk of stream) {
      if (chunk.usage) usage = chunk.usage;
      const content = chunk.choices?.[0]?.text;
      if (rec.ttft_ms === null && content) rec.ttft_ms = performance.now() - t0;
    }
    rec.latency_ms = performance.now() - t0;
    if (!usage) throw new Error('the stream ended without a usage chunk');
    if (rec.ttft_ms === null) throw new Error('the stream carried no text');
    rec.completion_tokens = usage.completion_tokens;
    rec.prompt_tokens = usage.prompt_tokens;
    rec.cached_tokens = usage.prompt_tokens_details?.cached_tokens ?? 0;
    records.push(rec);
  } catch (err) {
    errors.push({ client, group: rec.group, status: err.status ?? null, message: String(err.message ?? err) });
  }
}

async function clientLoop(client, endAt) {
  const shared = client < sharedClients;
  for (let first = true; performance.now() < endAt; first = false) await oneRequest(client, shared, first);
}

function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
}
function ttftSummary(recs) {
  const t = recs.map((r) => r.ttft_ms).sort((a, b) => a - b);
  return { requests: recs.length, p50_ms: percentile(t, 0.5), p95_ms: percentile(t, 0.95),
           p99_ms: percentile(t, 0.99) };
}

async function getJson(path) {
  const r = await fetch(`${server}${path}`);
  return { status: r.status, body: await r.json() };
}
async function metric(name) {
  const text = await (await fetch(`${server}/metrics`)).text();
  // The sample without labels, or summed over its labelled samples.
  const samples = text.split('\n').filter((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  if (samples.length === 0) return NaN;
  return samples.reduce((s, l) => s + Number(l.trim().split(/\s+/).pop()), 0);
}

// The end state: nothing but pins and cached blocks. The last stream's
// resources are released just after its [DONE], so this looks for a few
// seconds before it calls a difference a leak.
async function endState(pinnedBlocks) {
  let last = null;
  for (let i = 0; i < 50; ++i) {
    const stats = (await getJson('/v1/cache/stats')).body;
    const health = (await getJson('/health')).body;
    const running = await metric('kvstack_num_requests_running');
    const waiting = await metric('kvstack_num_requests_waiting');
    const problems = [];
    if (stats.in_use_blocks !== 0) problems.push(`${stats.in_use_blocks} blocks in use`);
    if (stats.live_sequences !== 0) problems.push(`${stats.live_sequences} live sequences`);
    if (stats.pinned_blocks !== pinnedBlocks) {
      problems.push(`${stats.pinned_blocks} pinned blocks, the pin has ${pinnedBlocks}`);
    }
    if (stats.free_blocks + stats.cached_blocks + stats.pinned_blocks !== stats.total_blocks) {
      problems.push(`free ${stats.free_blocks} + cached ${stats.cached_blocks} + pinned ${stats.pinned_blocks} ` +
                    `!= total ${stats.total_blocks}`);
    }
    if (health.requests_in_flight !== 0) problems.push(`${health.requests_in_flight} requests in flight (/health)`);
    if (running !== 0) problems.push(`kvstack_num_requests_running ${running}`);
    if (waiting !== 0) problems.push(`kvstack_num_requests_waiting ${waiting}`);
    last = { problems, stats, health, running, waiting };
    if (problems.length === 0) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return last;
}

const models = await openai.models.list();
const modelId = models.data[0].id;

// Pin the first shared system prompt, as a deployment pins its main one.
const pinResponse = await fetch(`${server}/v1/cache/pin`, {
  method: 'POST',
  headers: { 'Content-Type': 'application/json' },
  body: JSON.stringify({ prompt: sharedSystem(0) }),
});
const pin = await pinResponse.json();
if (pinResponse.status !== 200) {
  console.error(`POST /v1/cache/pin failed (${pinResponse.status}): ${JSON.stringify(pin)}`);
  process.exit(1);
}

const start = performance.now();
const endAt = start + durationS * 1000;
await Promise.all(Array.from({ length: clients }, (_, i) => clientLoop(i, endAt)));
const wallS = (performance.now() - start) / 1000;

const end = await endState(pin.blocks);
const preemptions = await metric('kvstack_num_preemptions_total');
const generated = records.reduce((s, r) => s + r.completion_tokens, 0);
const hits = records.filter((r) => r.cached_tokens > 0);
const misses = records.filter((r) => r.cached_tokens === 0);
const promptTokens = records.reduce((s, r) => s + r.prompt_tokens, 0);
const cachedTokens = records.reduce((s, r) => s + r.cached_tokens, 0);
const report = {
  model: modelId,
  clients,
  shared_clients: sharedClients,
  shared_prompts: sharedPrompts,
  duration_s: durationS,
  wall_s: wallS,
  max_tokens: maxTokens,
  pin: { id: pin.id, tokens: pin.tokens, blocks: pin.blocks },
  requests: records.length,
  errors: errors.length,
  error_samples: errors.slice(0, 5),
  generated_tokens: generated,
  tokens_per_s: generated / wallS,
  requests_per_s: records.length / wallS,
  prompt_tokens_mean: records.length ? promptTokens / records.length : 0,
  prefix_hit_rate_tokens: promptTokens ? cachedTokens / promptTokens : 0,
  ttft: {
    all: ttftSummary(records),
    hit: ttftSummary(hits),
    miss: ttftSummary(misses),
    // Without each client's first request: all CLIENTS of those arrive at
    // once, and their prefills queue behind one another.
    steady_hit: ttftSummary(hits.filter((r) => !r.first)),
    steady_miss: ttftSummary(misses.filter((r) => !r.first)),
    first_requests: ttftSummary(records.filter((r) => r.first)),
    shared_group: ttftSummary(records.filter((r) => r.group === 'shared')),
    unique_group: ttftSummary(records.filter((r) => r.group === 'unique')),
  },
  hits_by_group: {
    shared: hits.filter((r) => r.group === 'shared').length,
    unique: hits.filter((r) => r.group === 'unique').length,
  },
  latency_p50_ms: percentile(records.map((r) => r.latency_ms).sort((a, b) => a - b), 0.5),
  end_state: {
    clean: end.problems.length === 0,
    problems: end.problems,
    total_blocks: end.stats.total_blocks,
    free_blocks: end.stats.free_blocks,
    cached_blocks: end.stats.cached_blocks,
    pinned_blocks: end.stats.pinned_blocks,
    in_use_blocks: end.stats.in_use_blocks,
    live_sequences: end.stats.live_sequences,
    live_pins: end.stats.live_pins,
    evictions: end.stats.evictions,
    preemptions,
    requests_in_flight: end.health.requests_in_flight,
    requests_completed: end.health.requests_completed,
    requests_disconnected: end.health.requests_disconnected,
    requests_refused_busy: end.health.requests_refused_busy,
    num_requests_running: end.running,
    num_requests_waiting: end.waiting,
  },
};

const f = (x) => (Number.isFinite(x) ? x.toFixed(1) : '-');
const row = (name, s) => `| ${name} | ${s.requests} | ${f(s.p50_ms)} | ${f(s.p95_ms)} | ${f(s.p99_ms)} |`;
console.log(`${clients} streaming clients (${sharedClients} sharing ${sharedPrompts} system prompts, ` +
            `the first pinned: ${pin.tokens} tokens in ${pin.blocks} blocks) for ${durationS} s; ` +
            `wall ${wallS.toFixed(1)} s`);
console.log(`requests ${records.length}, errors ${errors.length}, generated ${generated} tokens, ` +
            `${report.tokens_per_s.toFixed(0)} tok/s aggregate, ${report.requests_per_s.toFixed(1)} req/s, ` +
            `mean prompt ${report.prompt_tokens_mean.toFixed(0)} tokens, ` +
            `${(100 * report.prefix_hit_rate_tokens).toFixed(1)}% of prompt tokens from the prefix cache`);
console.log('');
console.log('| TTFT | requests | p50 ms | p95 ms | p99 ms |');
console.log('|---|---:|---:|---:|---:|');
console.log(row('with prefix hits', report.ttft.hit));
console.log(row('without prefix hits', report.ttft.miss));
console.log(row('all', report.ttft.all));
console.log(row('with prefix hits, after the first wave', report.ttft.steady_hit));
console.log(row('without prefix hits, after the first wave', report.ttft.steady_miss));
console.log(row('first wave (each client\'s first request)', report.ttft.first_requests));
console.log(row('shared-prompt clients', report.ttft.shared_group));
console.log(row('unique-prompt clients', report.ttft.unique_group));
console.log('');
console.log(`hits: ${report.hits_by_group.shared} in the shared group, ` +
            `${report.hits_by_group.unique} in the unique group`);
const e = report.end_state;
console.log(`end state: ${e.clean ? 'clean' : 'NOT CLEAN: ' + e.problems.join('; ')}; blocks total ${e.total_blocks}, ` +
            `free ${e.free_blocks}, cached ${e.cached_blocks}, pinned ${e.pinned_blocks}, in use ${e.in_use_blocks}, ` +
            `live sequences ${e.live_sequences}, pins ${e.live_pins}, evictions ${e.evictions}, ` +
            `preemptions ${e.preemptions}; ` +
            `/health: in flight ${e.requests_in_flight}, completed ${e.requests_completed}, ` +
            `disconnected ${e.requests_disconnected}, refused busy ${e.requests_refused_busy}`);
for (const err of errors.slice(0, 5)) {
  console.log(`error: client ${err.client} (${err.group}): ${err.status ?? ''} ${err.message}`);
}
if (args.json) writeFileSync(args.json, JSON.stringify(report, null, 2) + '\n');
process.exit(errors.length === 0 && e.clean ? 0 : 1);
