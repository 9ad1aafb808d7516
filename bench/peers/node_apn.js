// @parse/node-apn driving an APNs server on one HTTP/2 connection.
//
//   NODE_EXTRA_CA_CERTS=ca.pem node node_apn.js config.json
//
// config.json: {address, port, key (PEM), keyId, teamId, topic, n, inflight, mode,
//               requestTimeout?, maxSessionMemory?}
//   mode "window": `inflight` sends in flight at a time (as bench/h2_ceiling.py does);
//   mode "all":    every send handed to node-apn at once, as Parse Server's push
//                  adapter does (Provider.send(notification, allTokens)).
// Prints one JSON line: sends, sent, failed, seconds, cpu_seconds, sends_per_second,
// and the failures grouped by their message.
'use strict';

const fs = require('fs');
const crypto = require('crypto');
const apn = require('@parse/node-apn');

function tokens(n) {
  // Distinct 64-hex tokens, as real devices have.
  return Array.from({ length: n }, (_, i) => i.toString(16).padStart(64, '0'));
}

function notification(topic) {
  const note = new apn.Notification();
  note.alert = { title: 'Hello', body: 'A message of ordinary length for a push' };
  note.sound = 'default';
  note.topic = topic;
  note.payload = { clarion: { delivery_id: crypto.randomUUID() } };
  return note;
}

function describe(failure) {
  if (failure.response && failure.response.reason) return `${failure.status} ${failure.response.reason}`;
  const error = failure.error || failure;
  return String((error && error.message) || error).slice(0, 160);
}

async function sendWindowed(provider, note, all, inflight, outcome) {
  let next = 0;
  async function lane() {
    while (next < all.length) {
      const token = all[next++];
      outcome(await provider.send(note, token));
    }
  }
  await Promise.all(Array.from({ length: Math.min(inflight, all.length) }, lane));
}

async function main() {
  const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
  const provider = new apn.Provider({
    token: { key: config.key, keyId: config.keyId, teamId: config.teamId },
    address: config.address, port: config.port, production: false,
    requestTimeout: config.requestTimeout || 5000,
    // node-apn hands its options to http2.connect; Node's default is 10 (MB).
    ...(config.maxSessionMemory ? { maxSessionMemory: config.maxSessionMemory } : {}),
  });
  const note = notification(config.topic);
  await provider.send(note, tokens(1)); // warm up: connection and provider JWT
  let sent = 0;
  const errors = {};
  const outcome = result => {
    sent += result.sent.length;
    for (const failure of result.failed) errors[describe(failure)] = (errors[describe(failure)] || 0) + 1;
  };
  const all = tokens(config.n);
  const cpu = process.cpuUsage();
  const start = process.hrtime.bigint();
  if (config.mode === 'all') outcome(await provider.send(note, all));
  else await sendWindowed(provider, note, all, config.inflight || 1000, outcome);
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const used = process.cpuUsage(cpu);
  await provider.shutdown();
  const failed = config.n - sent;
  process.stdout.write(JSON.stringify({
    sends: config.n, sent, failed, seconds, cpu_seconds: (used.user + used.system) / 1e6,
    sends_per_second: config.n / seconds, errors,
  }) + '\n');
}

main().catch(error => {
  console.error(error);
  process.exit(1);
});
