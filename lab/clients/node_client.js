// SPDX-License-Identifier: GPL-2.0-or-later
// Looks names up with node, one after another, and prints per name the
// addresses or the error code and how long it took, as JSON lines.
//   lookup:  dns.lookup (getaddrinfo on libuv's thread pool: the C library's
//            stub resolver, /etc/resolv.conf);
//   resolve: one dns.promises.Resolver (node's bundled c-ares) asking SERVER,
//            with TIMEOUT_MS and TRIES, or node's defaults when they are "-".
//
//   node node_client.js lookup - - - A:NAME|AAAA:NAME ...
//   node node_client.js resolve SERVER TIMEOUT_MS TRIES A:NAME|AAAA:NAME ...
'use strict';
const dns = require('node:dns');

async function main() {
  const [mode, server, timeout, tries, ...queries] = process.argv.slice(2);
  const options = {};
  if (timeout !== '-') options.timeout = Number(timeout);
  if (tries !== '-') options.tries = Number(tries);
  const resolver = new dns.promises.Resolver(options);
  if (mode === 'resolve') resolver.setServers([server]);
  for (const query of queries) {
    const [type, name] = query.split(':');
    const started = process.hrtime.bigint();
    const result = { name, type, addresses: [] };
    try {
      if (mode === 'lookup') {
        const found = await dns.promises.lookup(name, { family: type === 'AAAA' ? 6 : 4, all: true });
        result.addresses = found.map((entry) => entry.address);
      } else {
        result.addresses = await (type === 'AAAA' ? resolver.resolve6(name) : resolver.resolve4(name));
      }
      // node reports an empty list as success for some answers: keep it visible.
      if (result.addresses.length === 0) result.error = 'EMPTY';
    } catch (error) {
      result.error = error.code || String(error);
    }
    result.seconds = Number(process.hrtime.bigint() - started) / 1e9;
    process.stdout.write(JSON.stringify(result) + '\n');
  }
}

main();
