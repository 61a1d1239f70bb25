// The page side of the browser conformance run: drives the official `@layercode/js-sdk`
// (served from node_modules by the test) through the scenarios of /config.json and records
// everything the SDK reports through its callbacks. browser_driver.mjs calls `harness.run()`
// and prints what it returns.
import LayercodeClient from '/sdk/layercode-js-sdk.esm.js';

const log = [];
const amplitudes = {};
const failures = [];
let scenario = null;
let client = null;

const now = () => Math.round(performance.now());
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function record(kind, detail = {}) {
  log.push({ t: now(), scenario, kind, ...detail });
}

function amplitude(who, value) {
  const stats = (amplitudes[scenario] ??= {});
  const entry = (stats[who] ??= { count: 0, nonzero: 0, max: 0 });
  entry.count += 1;
  if (value > 0) entry.nonzero += 1;
  entry.max = Math.max(entry.max, value);
}

// Every SDK call and fetch is bounded: a hang fails its scenario instead of the whole run.
function bounded(what, promise, timeoutMs = 10000) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${scenario}: ${what} took over ${timeoutMs} ms`)), timeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// Wait (bounded) for the first log entry from index `since` on that matches `predicate`.
async function waitFor(what, predicate, timeoutMs, since) {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    for (let i = since; i < log.length; i++) {
      if (predicate(log[i])) return log[i];
    }
    await sleep(10);
  }
  throw new Error(`${scenario}: no ${what} within ${timeoutMs} ms`);
}

const isMessage = (type, extra = () => true) => (e) =>
  e.kind === 'message' && e.message.type === type && extra(e.message);

async function mark(name) {
  scenario = name;
  // The test's page app notes the time of each mark, to cut the server's recording.
  const response = await bounded('POST /mark', fetch('/mark', { method: 'POST', body: name }));
  if (!response.ok) throw new Error(`mark ${name}: HTTP ${response.status}`);
  record('mark', { name });
}

function newClient(connection, config) {
  return new LayercodeClient({
    agentId: config.agent_id,
    authorizeSessionEndpoint: connection.authorize_path,
    metadata: config.metadata,
    onConnect: ({ conversationId, config: agentConfig }) =>
      record('connect', { conversationId, config: agentConfig }),
    onDisconnect: () => record('disconnect'),
    onError: (error) => record('error', { message: String(error?.message ?? error) }),
    onStatusChange: (status) => record('status', { status }),
    onMessage: (message) => record('message', { message }),
    onDataMessage: (message) => record('data', { message }),
    onAgentSpeakingChange: (value) => record('agentSpeaking', { value }),
    onUserIsSpeakingChange: (value) => record('userSpeaking', { value }),
    onMuteStateChange: (value) => record('muted', { value }),
    onUserAmplitudeChange: (value) => amplitude('user', value),
    onAgentAmplitudeChange: (value) => amplitude('agent', value),
  });
}

// An agent turn that answers something: its transcript, then played out to its turn.end.
async function agentTurnPlayed(since, timeouts, userText) {
  const transcript = await waitFor(
    'user.transcript',
    isMessage('user.transcript', (m) => userText === undefined || m.content === userText),
    timeouts.reply,
    since,
  );
  await waitFor('agent speaking', (e) => e.kind === 'agentSpeaking' && e.value, timeouts.reply, since);
  await waitFor(
    'turn.end of the agent',
    isMessage('turn.end', (m) => m.role === 'assistant'),
    timeouts.playback,
    log.indexOf(transcript),
  );
}

const scenarios = {
  async connect(step, config, connection) {
    const since = log.length;
    if (client === null) {
      client = newClient(connection, config);
      client._websocketUrl = connection.websocket_url; // the SDK has no option for it
    }
    await bounded('connect()', client.connect());
    await waitFor('onConnect', (e) => e.kind === 'connect', config.timeouts.connect, since);
    // The VAD loads (from the routed assets.layercode.com) on the first connect() only.
    record('vad', { loaded: client.vad !== null });
    // client.ready goes out in the same onopen handler; give it a moment on the wire.
    await sleep(step.settle_ms ?? 200);
  },

  // Automatic turn-taking: the SDK's own VAD finds the speech in the fake microphone.
  async vad_turn(step, config) {
    const since = log.length;
    const t = config.timeouts;
    await waitFor('vad_start', isMessage('vad_events', (m) => m.event === 'vad_start'), t.vad, since);
    await waitFor('vad_end', isMessage('vad_events', (m) => m.event === 'vad_end'), t.vad, since);
    await agentTurnPlayed(since, t);
  },

  // Automatic turn-taking, muted while the user speaks: the SDK closes the turn itself with a
  // synthetic vad_end and sends nothing more. It stays muted (unmuting rebuilds the VAD).
  async mute_speech(step, config) {
    const since = log.length;
    const t = config.timeouts;
    await waitFor('vad_start', isMessage('vad_events', (m) => m.event === 'vad_start'), t.vad, since);
    await sleep(step.speak_ms);
    const muted = log.length;
    client.mute();
    await waitFor('vad_end', isMessage('vad_events', (m) => m.event === 'vad_end'), 1000, muted);
    await agentTurnPlayed(since, t);
  },

  async text(step, config) {
    const since = log.length;
    await bounded('sendClientResponseText()', client.sendClientResponseText(step.content));
    await agentTurnPlayed(since, config.timeouts, step.content);
  },

  async data(step, config) {
    const since = log.length;
    await bounded('sendClientResponseData()', client.sendClientResponseData(step.data));
    await waitFor('onDataMessage', (e) => e.kind === 'data', config.timeouts.reply, since);
    await sleep(step.settle_ms ?? 200);
  },

  async push_to_talk(step, config) {
    const since = log.length;
    await sleep(step.idle_ms);
    await bounded('triggerUserTurnStarted()', client.triggerUserTurnStarted());
    record('pressed', { userSpeaking: client.userSpeaking });
    await sleep(step.hold_ms);
    await bounded('triggerUserTurnFinished()', client.triggerUserTurnFinished());
    record('released', { userSpeaking: client.userSpeaking });
    await agentTurnPlayed(since, config.timeouts);
  },

  // Barge-in: a push-to-talk press while the agent's (long) answer to typed text plays.
  async interrupt(step, config) {
    const since = log.length;
    const t = config.timeouts;
    await bounded('sendClientResponseText()', client.sendClientResponseText(step.content));
    await waitFor('agent speaking', (e) => e.kind === 'agentSpeaking' && e.value, t.reply, since);
    await sleep(step.before_ms);
    const pressed = log.length;
    record('press', { agentSpeaking: client.agentSpeaking });
    await bounded('triggerUserTurnStarted()', client.triggerUserTurnStarted());
    record('pressed', { agentSpeaking: client.agentSpeaking });
    await sleep(step.hold_ms);
    await bounded('triggerUserTurnFinished()', client.triggerUserTurnFinished());
    await agentTurnPlayed(pressed, t);
  },

  // Muted: push-to-talk still opens and closes the turn, with no audio.
  async mute(step, config) {
    const since = log.length;
    client.mute();
    await bounded('triggerUserTurnStarted()', client.triggerUserTurnStarted());
    await sleep(step.hold_ms);
    await bounded('triggerUserTurnFinished()', client.triggerUserTurnFinished());
    await agentTurnPlayed(since, config.timeouts);
    await bounded('unmute()', client.unmute());
  },

  async disconnect(step, config) {
    const since = log.length;
    await bounded('disconnect()', client.disconnect());
    await waitFor(
      'status disconnected',
      (e) => e.kind === 'status' && e.status === 'disconnected',
      config.timeouts.connect,
      since,
    );
    await sleep(step.settle_ms ?? 200);
  },

  // The server drops the connection: the SDK reports it, and does not reconnect by itself.
  async drop(step, config, connection) {
    const since = log.length;
    const response = await bounded('POST /drop', fetch(`/drop/${connection.name}`, { method: 'POST' }));
    if (!response.ok) throw new Error(`drop: HTTP ${response.status}`);
    await waitFor(
      'status disconnected',
      (e) => e.kind === 'status' && e.status === 'disconnected',
      config.timeouts.connect,
      since,
    );
    await sleep(step.watch_ms);
    record('after_drop', { status: client.status });
  },
};

async function run() {
  const config = await bounded('GET /config.json', fetch('/config.json').then((r) => r.json()));
  const started = now();
  for (const connection of config.connections) {
    client = null;
    for (const step of connection.steps) {
      const name = `${connection.name}.${step.name}`;
      await mark(name);
      const began = now();
      try {
        await scenarios[step.kind](step, config, connection);
        record('done', { ms: now() - began });
      } catch (error) {
        failures.push({ scenario: name, error: String(error?.stack ?? error) });
        record('failed', { error: String(error?.message ?? error) });
        break; // the rest of this connection depends on this step
      }
    }
    if (client !== null && client.status !== 'disconnected') {
      await bounded('disconnect()', client.disconnect()).catch(() => {});
    }
  }
  scenario = null;
  return { log, amplitudes, failures, ms: now() - started };
}

window.harness = { run };
