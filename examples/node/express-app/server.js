'use strict';
// node server.js  (PORT, default 3000; TOLLGATE_URL, e.g. redis://127.0.0.1:6379/0,
// default the in-process memory store; TRUSTED_PROXIES, default 0)
const { Limiter } = require('tollgate');
const { createApp } = require('./app');

const limiter = new Limiter(process.env.TOLLGATE_URL ? { url: process.env.TOLLGATE_URL, failureMode: 'local' } : {});
const app = createApp({ limiter, trustedProxies: Number(process.env.TRUSTED_PROXIES || 0) });
const port = Number(process.env.PORT || 3000);
const server = app.listen(port, process.env.HOST || '127.0.0.1', () => {
  console.log(`listening on http://${server.address().address}:${server.address().port}`);
});

function shutdown() {
  server.close(() => limiter.close().then(() => process.exit(0)));
  server.closeAllConnections();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
