// Parse Server (on PostgreSQL) broadcasting one push to `n` iOS installations
// through @parse/push-adapter → @parse/node-apn → an APNs server.
//
//   NODE_EXTRA_CA_CERTS=ca.pem node parse_push.js config.json
//
// config.json: {address, port, key (PEM), keyId, teamId, topic, n, databaseURI, serverPort,
//               requestTimeout?, maxSessionMemory?}
// The installations are written straight into Parse's _Installation table (one
// made through the REST API first, so Parse creates the table its own way).
// Timed: from `POST /parse/push` to the _PushStatus saying the push is done.
// Prints one JSON line: sends, sent, failed, seconds, sends_per_second, errors.
'use strict';

const fs = require('fs');
const crypto = require('crypto');
const { Client } = require('pg');
const npmlog = require('npmlog');
const { ParseServer } = require('parse-server');

const APP_ID = 'bench';
const MASTER_KEY = 'bench-master-key';
const CONFIG = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const SERVER_URL = `http://127.0.0.1:${CONFIG.serverPort}/parse`;
const HEADERS = { 'X-Parse-Application-Id': APP_ID, 'X-Parse-Master-Key': MASTER_KEY,
  'Content-Type': 'application/json' };

async function rest(method, path, body) {
  const answer = await fetch(SERVER_URL + path, { method, headers: HEADERS, body: body && JSON.stringify(body) });
  const text = await answer.text();
  if (!answer.ok) throw new Error(`${method} ${path}: ${answer.status} ${text}`);
  return { headers: answer.headers, body: JSON.parse(text) };
}

async function pushAdapter(config) {
  // The adapter pinned in package.json (parse-server bundles an older one).
  const { default: ParsePushAdapter } = await import('@parse/push-adapter');
  const ios = {
    token: { key: config.key, keyId: config.keyId, teamId: config.teamId },
    topic: config.topic, production: false, address: config.address, port: config.port,
  };
  if (config.requestTimeout) ios.requestTimeout = config.requestTimeout;
  if (config.maxSessionMemory) ios.maxSessionMemory = config.maxSessionMemory;
  return new ParsePushAdapter({ ios });
}

async function addInstallations(config) {
  await rest('POST', '/installations', { deviceType: 'ios', deviceToken: 'f'.repeat(64),
    installationId: crypto.randomUUID(), appIdentifier: config.topic });
  const db = new Client({ connectionString: config.databaseURI });
  await db.connect();
  await db.query(`
    INSERT INTO "_Installation" ("objectId", "createdAt", "updatedAt", "installationId", "deviceToken",
                                 "deviceType", "appIdentifier")
    SELECT substr(md5(i::text), 1, 10), now(), now(), md5(i::text), lpad(to_hex(i), 64, '0'), 'ios', $1
    FROM generate_series(1, $2::int - 1) AS i`, [config.topic, config.n]);
  await db.end();
}

async function waitForPush(statusId, deadline) {
  for (;;) {
    const { body } = await rest('GET', `/classes/_PushStatus/${statusId}`);
    if (body.status === 'succeeded' || body.status === 'failed') return body;
    if (Date.now() > deadline) return body;
    await new Promise(resolve => setTimeout(resolve, 20));
  }
}

function collectErrors() {
  const errors = {};
  npmlog.level = 'silent';
  npmlog.on('log', message => {
    if (message.level !== 'error') return;
    const reason = String(message.message).replace(/device \S+ /, 'device … ').slice(0, 160);
    errors[reason] = (errors[reason] || 0) + 1;
  });
  return errors;
}

async function main() {
  const errors = collectErrors();
  await ParseServer.startApp({
    appId: APP_ID, masterKey: MASTER_KEY, databaseURI: CONFIG.databaseURI, serverURL: SERVER_URL,
    port: CONFIG.serverPort, host: '127.0.0.1', mountPath: '/parse', push: { adapter: await pushAdapter(CONFIG) },
    logLevel: 'error', silent: true, verifyServerUrl: false, masterKeyIps: ['127.0.0.1', '::1'],
  });
  await addInstallations(CONFIG);
  const start = process.hrtime.bigint();
  const answer = await rest('POST', '/push', { where: { deviceType: 'ios' },
    data: { alert: { title: 'Hello', body: 'A message of ordinary length for a push' }, sound: 'default' } });
  const statusId = answer.headers.get('x-parse-push-status-id');
  const status = await waitForPush(statusId, Date.now() + 600_000);
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  process.stdout.write(JSON.stringify({
    sends: CONFIG.n, sent: status.numSent || 0, failed: status.numFailed || 0, status: status.status,
    seconds, sends_per_second: CONFIG.n / seconds, errors,
  }) + '\n');
  process.exit(0);
}

main().catch(error => {
  console.error(error);
  process.exit(1);
});
