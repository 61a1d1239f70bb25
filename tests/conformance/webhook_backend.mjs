// A Layercode agent backend written with the official `@layercode/node-server-sdk`, the way
// its README shows: `verifySignature` on every request, `streamResponse` for `session.start`
// and `message`. The local agent server uses it as its webhook_url.
//
// Usage: LAYERCODE_WEBHOOK_SECRET=... node webhook_backend.mjs
// Listens on a free 127.0.0.1 port and prints {"port": N} as its first line. GET /received
// returns every request it got: {type, verified, reparsedVerified, status, body}.
//
// Replies: session.start says WELCOME; a message answers "Node heard: <text>" plus a data
// event, except that a text containing "fail" makes the handler throw (streamResponse then
// sends response.error and closes); data gets {node_received: <data>}; session.end and
// session.update get {ok: true}; anything else a 400.
import http from 'node:http';
import { streamResponse, verifySignature } from '@layercode/node-server-sdk';

const WELCOME = 'Hello from the Node server SDK.';
const secret = process.env.LAYERCODE_WEBHOOK_SECRET;
if (!secret) {
  console.error('LAYERCODE_WEBHOOK_SECRET is not set');
  process.exit(2);
}
const received = [];

function readBody(request) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    request.on('data', (chunk) => chunks.push(chunk));
    request.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    request.on('error', reject);
  });
}

function json(response, status, body) {
  response.writeHead(status, { 'Content-Type': 'application/json' });
  response.end(JSON.stringify(body));
  return status;
}

// streamResponse returns a fetch Response: copy it onto node's ServerResponse as it streams.
async function send(response, reply) {
  response.writeHead(reply.status, Object.fromEntries(reply.headers));
  for await (const chunk of reply.body) response.write(chunk);
  response.end();
  return reply.status;
}

async function handle(request, response) {
  if (request.method === 'GET' && request.url === '/received') return json(response, 200, received);
  const raw = await readBody(request);
  const signature = request.headers['layercode-signature'] ?? '';
  const verified = verifySignature({ payload: raw, signature, secret });
  let body = null;
  try {
    body = JSON.parse(raw);
  } catch {
    // not JSON: rejected below
  }
  // The SDK's examples verify JSON.stringify(parsed body) rather than the raw bytes: the
  // server's encoding must make both work.
  const reparsedVerified =
    body !== null && verifySignature({ payload: JSON.stringify(body), signature, secret });
  const entry = { type: body?.type ?? null, verified, reparsedVerified, status: null, body };
  received.push(entry);
  if (!verified) return (entry.status = json(response, 401, { error: 'invalid signature' }));
  if (body === null) return (entry.status = json(response, 400, { error: 'not JSON' }));
  switch (body.type) {
    case 'session.start':
      return (entry.status = await send(
        response,
        streamResponse(body, async ({ stream }) => {
          stream.tts(WELCOME);
          stream.end();
        }),
      ));
    case 'message':
      return (entry.status = await send(
        response,
        streamResponse(body, async ({ stream }) => {
          if (body.text.includes('fail')) throw new Error('the agent failed on purpose');
          stream.tts(`Node heard: ${body.text}`);
          stream.data({ echo: body.text });
          stream.end();
        }),
      ));
    case 'data':
      return (entry.status = json(response, 200, { node_received: body.data }));
    case 'session.end':
    case 'session.update':
      return (entry.status = json(response, 200, { ok: true }));
    default:
      return (entry.status = json(response, 400, { error: `unknown event type ${body.type}` }));
  }
}

const server = http.createServer((request, response) => {
  handle(request, response).catch((error) => {
    console.error(error);
    if (!response.headersSent) json(response, 500, { error: String(error) });
    else response.end();
  });
});
server.listen(0, '127.0.0.1', () => {
  console.log(JSON.stringify({ port: server.address().port }));
});
process.on('SIGTERM', () => {
  server.close(() => process.exit(0));
  server.closeAllConnections(); // the local server keeps its connections alive
  setTimeout(() => process.exit(0), 1000).unref();
});
